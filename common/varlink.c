/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>

#include "varlink.h"

/* ---- Names --------------------------------------------------------------- */

static bool ascii_alpha(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool ascii_alnum(char c) {
        return ascii_alpha(c) || (c >= '0' && c <= '9');
}

/* [A-Za-z]([-]*[A-Za-z0-9])*(\.[A-Za-z0-9]([-]*[A-Za-z0-9])*)+, the spec's grammar. */
static bool interface_name_is_valid_n(const char *s, size_t n) {
        size_t labels = 0;

        if (n == 0 || n > VARLINK_NAME_MAX || !ascii_alpha(s[0]))
                return false;

        for (size_t i = 0; i < n;) {
                /* Start of a label: an alphanumeric (a letter for the first label, checked above). */
                if (!ascii_alnum(s[i]))
                        return false;
                i++;
                while (i < n && s[i] != '.') {
                        if (s[i] == '-') {
                                while (i < n && s[i] == '-')
                                        i++;
                                /* Dashes only between alphanumerics. */
                                if (i >= n || !ascii_alnum(s[i]))
                                        return false;
                        } else if (!ascii_alnum(s[i]))
                                return false;
                        i++;
                }
                labels++;
                if (i < n) {
                        i++; /* the dot */
                        if (i >= n)
                                return false;
                }
        }
        return labels >= 2;
}

static bool member_name_is_valid_n(const char *s, size_t n) {
        if (n == 0 || n > VARLINK_NAME_MAX || s[0] < 'A' || s[0] > 'Z')
                return false;
        for (size_t i = 1; i < n; i++)
                if (!ascii_alnum(s[i]))
                        return false;
        return true;
}

bool varlink_interface_name_is_valid(const char *s) {
        return s && interface_name_is_valid_n(s, strlen(s));
}

bool varlink_member_name_is_valid(const char *s) {
        return s && member_name_is_valid_n(s, strlen(s));
}

bool varlink_qualified_name_is_valid(const char *s) {
        const char *dot;
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n > VARLINK_NAME_MAX)
                return false;
        dot = strrchr(s, '.');
        if (!dot)
                return false;
        return interface_name_is_valid_n(s, (size_t) (dot - s)) &&
                member_name_is_valid_n(dot + 1, n - (size_t) (dot - s) - 1);
}

/* ---- Input buffer -------------------------------------------------------- */

struct VarlinkBuffer {
        char *data;
        size_t allocated;
        size_t start;       /* first byte not yet handed out by _next() */
        size_t end;         /* bytes held */
        size_t partial;     /* bytes after the last NUL: the unterminated message */
        size_t n_messages;  /* complete messages in [start, end) */
        size_t message_max; /* NUL included */
};

int varlink_buffer_new(size_t message_max, VarlinkBuffer **ret) {
        VarlinkBuffer *b;

        if (!ret)
                return -EINVAL;
        if (message_max == 0)
                message_max = VARLINK_MESSAGE_MAX_DEFAULT;
        if (message_max < 2)
                return -EINVAL;

        b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->message_max = message_max;
        *ret = b;
        return 0;
}

VarlinkBuffer *varlink_buffer_free(VarlinkBuffer *b) {
        if (!b)
                return NULL;
        free(b->data);
        free(b);
        return NULL;
}

int varlink_buffer_feed(VarlinkBuffer *b, const void *data, size_t size) {
        const char *p = data, *e = p + size;
        size_t partial, n_new = 0, need;

        if (!b || (!data && size > 0))
                return -EINVAL;
        if (size == 0)
                return 0;

        /* Check every message in data against the limit before storing a byte of it. */
        partial = b->partial;
        while (p < e) {
                const char *nul = memchr(p, 0, (size_t) (e - p));
                size_t chunk = nul ? (size_t) (nul - p) + 1 : (size_t) (e - p);

                /* An unterminated message is too big once it cannot take its NUL any more. */
                if (chunk > b->message_max - partial - (nul ? 0 : 1))
                        return -EMSGSIZE;
                if (nul) {
                        partial = 0;
                        n_new++;
                } else
                        partial += chunk;
                p += chunk;
        }

        /* Drop what was handed out; pointers from _next() are documented to die here. */
        if (b->start > 0) {
                memmove(b->data, b->data + b->start, b->end - b->start);
                b->end -= b->start;
                b->start = 0;
        }

        if (!size_add_ok(b->end, size, &need))
                return -ENOMEM;
        if (need > b->allocated) {
                size_t a = MAX(need, MIN(b->allocated * 2, SIZE_MAX / 2));
                char *n = realloc(b->data, a);

                if (!n)
                        return -ENOMEM;
                b->data = n;
                b->allocated = a;
        }

        memcpy(b->data + b->end, data, size);
        b->end += size;
        b->partial = partial;
        b->n_messages += n_new;
        return 0;
}

int varlink_buffer_next(VarlinkBuffer *b, const char **ret_message, size_t *ret_size) {
        const char *m, *nul;

        if (!b || !ret_message)
                return -EINVAL;
        if (b->n_messages == 0)
                return 0;

        m = b->data + b->start;
        nul = memchr(m, 0, b->end - b->start);
        if (!nul) /* n_messages says there is one: cannot happen */
                return -EIO;

        b->start += (size_t) (nul - m) + 1;
        b->n_messages--;

        *ret_message = m;
        if (ret_size)
                *ret_size = (size_t) (nul - m);
        return 1;
}

size_t varlink_buffer_partial(const VarlinkBuffer *b) {
        return b ? b->partial : 0;
}

bool varlink_buffer_has_message(const VarlinkBuffer *b) {
        return b && b->n_messages > 0;
}

/* ---- Parsing ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence starting at a byte >= 0x80, 0 if invalid. */
static size_t utf8_sequence_len(const unsigned char *p, size_t avail) {
        unsigned c = p[0];
        size_t n;
        uint32_t cp;

        if ((c & 0xe0) == 0xc0) {
                n = 1;
                cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
                n = 2;
                cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
                n = 3;
                cp = c & 0x07;
        } else
                return 0;
        if (avail <= n)
                return 0;
        for (size_t i = 1; i <= n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        /* Overlong forms, surrogates, beyond U+10FFFF. */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return n + 1;
}

static bool is_hex(unsigned char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static size_t json_literal_len(const char *p, size_t avail) {
        static const char *const literals[] = { "true", "false", "null" };

        for (size_t k = 0; k < ELEMENTSOF(literals); k++) {
                size_t n = strlen(literals[k]);

                if (avail >= n && memcmp(p, literals[k], n) == 0 &&
                    (avail == n || !ascii_alnum(p[n])))
                        return n;
        }
        return 0;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, not followed by more number characters. */
static size_t json_number_len(const char *p, size_t avail) {
        size_t i = 0;

        if (i < avail && p[i] == '-')
                i++;
        if (i >= avail || !is_digit(p[i]))
                return 0;
        if (p[i] == '0')
                i++;
        else
                while (i < avail && is_digit(p[i]))
                        i++;
        if (i < avail && p[i] == '.') {
                i++;
                if (i >= avail || !is_digit(p[i]))
                        return 0;
                while (i < avail && is_digit(p[i]))
                        i++;
        }
        if (i < avail && (p[i] == 'e' || p[i] == 'E')) {
                i++;
                if (i < avail && (p[i] == '+' || p[i] == '-'))
                        i++;
                if (i >= avail || !is_digit(p[i]))
                        return 0;
                while (i < avail && is_digit(p[i]))
                        i++;
        }
        if (i < avail && (is_digit(p[i]) || p[i] == '.' || p[i] == 'e' || p[i] == 'E' ||
                          p[i] == '+' || p[i] == '-'))
                return 0;
        return i;
}

/*
 * Before json-c sees the text: valid UTF-8, no raw NUL, no raw control
 * characters inside strings, no "\u0000" escape anywhere (json-c would
 * silently cut object keys at it, and C strings everywhere downstream), and
 * outside strings nothing but JSON's punctuation, numbers and literals.
 * Counts the object members (colons outside strings) into *members.
 */
static bool json_text_is_clean(const char *text, size_t size, size_t *members) {
        const unsigned char *p = (const unsigned char *) text;
        bool in_string = false;

        for (size_t i = 0; i < size;) {
                unsigned char c = p[i];

                if (c == 0)
                        return false;
                if (c >= 0x80) {
                        size_t n = utf8_sequence_len(p + i, size - i);
                        if (n == 0)
                                return false;
                        i += n;
                        continue;
                }
                if (!in_string) {
                        if (c == '"') {
                                in_string = true;
                                i++;
                                continue;
                        }
                        /*
                         * Outside strings only JSON's own grammar: json-c would also take
                         * NaN, Infinity, "1." and "01" (and write "1." back out).
                         */
                        if (ascii_alpha((char) c)) {
                                size_t n = json_literal_len(text + i, size - i);
                                if (n == 0)
                                        return false;
                                i += n;
                                continue;
                        }
                        if (c == '-' || (c >= '0' && c <= '9')) {
                                size_t n = json_number_len(text + i, size - i);
                                if (n == 0)
                                        return false;
                                i += n;
                                continue;
                        }
                        if (!strchr("{}[],: \t\r\n", c))
                                return false;
                        if (c == ':')
                                (*members)++;
                        i++;
                        continue;
                }
                if (c < 0x20)
                        return false;
                if (c == '"')
                        in_string = false;
                else if (c == '\\') {
                        if (i + 1 >= size)
                                return false;
                        if (p[i + 1] == 'u') {
                                if (size - i < 6)
                                        return false;
                                for (size_t k = 2; k < 6; k++)
                                        if (!is_hex(p[i + k]))
                                                return false;
                                if (memcmp(p + i + 2, "0000", 4) == 0)
                                        return false;
                                i += 6;
                                continue;
                        }
                        i += 2;
                        continue;
                }
                i++;
        }
        return !in_string;
}

static bool json_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One JSON object, nothing but whitespace after it. */
/* Members of every object in the tree; json-c keeps one of each duplicate key. */
static size_t json_count_members(json_object *o) {
        size_t n = 0;

        if (json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, key, v) {
                        (void) key;
                        n += 1 + json_count_members(v);
                }
        } else if (json_object_is_type(o, json_type_array)) {
                size_t len = json_object_array_length(o);
                for (size_t i = 0; i < len; i++)
                        n += json_count_members(json_object_array_get_idx(o, i));
        }
        return n;
}

static int parse_object(const char *message, size_t size, json_object **ret) {
        json_tokener *tok;
        json_object *o;
        size_t end, members = 0;

        if (!message || size == 0 || size > INT_MAX)
                return -EBADMSG;
        if (!json_text_is_clean(message, size, &members))
                return -EBADMSG;

        tok = json_tokener_new_ex(VARLINK_JSON_DEPTH_MAX);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                            JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, message, (int) size);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        if (!o)
                return -EBADMSG;
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }
        for (; end < size; end++)
                if (!json_space(message[end])) {
                        json_object_put(o);
                        return -EBADMSG;
                }
        /* Duplicate keys: which one counts would depend on the parser. Refuse them. */
        if (json_count_members(o) != members) {
                json_object_put(o);
                return -EBADMSG;
        }

        *ret = o;
        return 0;
}

/* A JSON string without an embedded NUL; its length in *ret_len. */
static const char *json_string_clean(json_object *v, size_t *ret_len) {
        const char *s;
        int len;

        if (!json_object_is_type(v, json_type_string))
                return NULL;
        s = json_object_get_string(v);
        len = json_object_get_string_len(v);
        if (!s || len < 0 || strlen(s) != (size_t) len)
                return NULL;
        if (ret_len)
                *ret_len = (size_t) len;
        return s;
}

/* "parameters": absent or null give {}, an object is taken, anything else is malformed. */
static int parameters_take(json_object *v, json_object **ret) {
        if (!v || json_object_is_type(v, json_type_null)) {
                json_object *o = json_object_new_object();
                if (!o)
                        return -ENOMEM;
                *ret = o;
                return 0;
        }
        if (!json_object_is_type(v, json_type_object))
                return -EBADMSG;
        *ret = json_object_get(v);
        return 0;
}

static int flag_get(json_object *v, bool *ret) {
        if (!json_object_is_type(v, json_type_boolean))
                return -EBADMSG;
        *ret = json_object_get_boolean(v);
        return 0;
}

int varlink_call_parse(const char *message, size_t size, VarlinkCall *ret) {
        json_object *root = NULL, *parameters = NULL, *params_v = NULL;
        const char *method = NULL;
        bool oneway = false, more = false, upgrade = false;
        char *m = NULL, *interface = NULL;
        int r;

        if (!ret)
                return -EINVAL;

        r = parse_object(message, size, &root);
        if (r < 0)
                return r;

        json_object_object_foreach(root, key, v) {
                if (streq(key, "method")) {
                        method = json_string_clean(v, NULL);
                        if (!method || !varlink_qualified_name_is_valid(method))
                                goto malformed;
                } else if (streq(key, "parameters"))
                        params_v = v;
                else if (streq(key, "oneway")) {
                        if (flag_get(v, &oneway) < 0)
                                goto malformed;
                } else if (streq(key, "more")) {
                        if (flag_get(v, &more) < 0)
                                goto malformed;
                } else if (streq(key, "upgrade")) {
                        if (flag_get(v, &upgrade) < 0)
                                goto malformed;
                } else
                        goto malformed;
        }
        /* A oneway call gets no reply, so it cannot get several. */
        if (!method || (oneway && more))
                goto malformed;

        r = parameters_take(params_v, &parameters);
        if (r < 0)
                goto fail;

        m = strdup(method);
        interface = strndup(method, (size_t) (strrchr(method, '.') - method));
        if (!m || !interface) {
                r = -ENOMEM;
                goto fail;
        }

        json_object_put(root);
        *ret = (VarlinkCall) {
                .method = m,
                .interface = interface,
                .member = strrchr(m, '.') + 1,
                .parameters = parameters,
                .oneway = oneway,
                .more = more,
                .upgrade = upgrade,
        };
        return 0;

malformed:
        r = -EBADMSG;
fail:
        free(m);
        free(interface);
        json_object_put(parameters);
        json_object_put(root);
        return r;
}

void varlink_call_done(VarlinkCall *c) {
        if (!c)
                return;
        free(c->method);
        free(c->interface);
        json_object_put(c->parameters);
        *c = (VarlinkCall) {};
}

int varlink_reply_parse(const char *message, size_t size, VarlinkReply *ret) {
        json_object *root = NULL, *parameters = NULL, *params_v = NULL;
        const char *error = NULL;
        bool continues = false;
        char *e = NULL;
        int r;

        if (!ret)
                return -EINVAL;

        r = parse_object(message, size, &root);
        if (r < 0)
                return r;

        json_object_object_foreach(root, key, v) {
                if (streq(key, "parameters"))
                        params_v = v;
                else if (streq(key, "continues")) {
                        if (flag_get(v, &continues) < 0)
                                goto malformed;
                } else if (streq(key, "error")) {
                        error = json_string_clean(v, NULL);
                        if (!error || !varlink_qualified_name_is_valid(error))
                                goto malformed;
                } else
                        goto malformed;
        }
        /* An error ends the call: it cannot promise more replies. */
        if (error && continues)
                goto malformed;

        r = parameters_take(params_v, &parameters);
        if (r < 0)
                goto fail;
        if (error) {
                e = strdup(error);
                if (!e) {
                        r = -ENOMEM;
                        goto fail;
                }
        }

        json_object_put(root);
        *ret = (VarlinkReply) {
                .parameters = parameters,
                .error = e,
                .continues = continues,
        };
        return 0;

malformed:
        r = -EBADMSG;
fail:
        json_object_put(parameters);
        json_object_put(root);
        return r;
}

void varlink_reply_done(VarlinkReply *r) {
        if (!r)
                return;
        json_object_put(r->parameters);
        free(r->error);
        *r = (VarlinkReply) {};
}

/* ---- Formatting ---------------------------------------------------------- */

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

/* Serialise root and append the NUL terminator. */
static int message_finish(json_object *root, char **ret, size_t *ret_size) {
        const char *text;
        size_t len, total;
        char *m;

        text = json_object_to_json_string_length(
                root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!text)
                return -ENOMEM;
        if (!size_add_ok(len, 1, &total))
                return -ENOMEM;
        m = malloc(total);
        if (!m)
                return -ENOMEM;
        memcpy(m, text, len);
        m[len] = '\0';

        *ret = m;
        if (ret_size)
                *ret_size = total;
        return 0;
}

static int add_parameters(json_object *root, json_object *parameters) {
        json_object *p;

        if (parameters && !json_object_is_type(parameters, json_type_object))
                return -EINVAL;
        p = parameters ? json_object_get(parameters) : json_object_new_object();
        if (!p)
                return -ENOMEM;
        if (json_object_object_add(root, "parameters", p) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return 0;
}

static int add_string(json_object *root, const char *key, const char *value) {
        json_object *s = json_object_new_string(value);

        if (!s)
                return -ENOMEM;
        if (json_object_object_add(root, key, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

static int add_true(json_object *root, const char *key) {
        json_object *t = json_object_new_boolean(true);

        if (!t)
                return -ENOMEM;
        if (json_object_object_add(root, key, t) < 0) {
                json_object_put(t);
                return -ENOMEM;
        }
        return 0;
}

int varlink_call_format(const char *method, json_object *parameters, VarlinkCallFlags flags,
                        char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        int r;

        if (!ret || !varlink_qualified_name_is_valid(method))
                return -EINVAL;
        if ((flags & ~(VARLINK_CALL_ONEWAY | VARLINK_CALL_MORE | VARLINK_CALL_UPGRADE)) ||
            ((flags & VARLINK_CALL_ONEWAY) && (flags & VARLINK_CALL_MORE)))
                return -EINVAL;

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;
        r = add_string(root, "method", method);
        if (r < 0)
                return r;
        r = add_parameters(root, parameters);
        if (r < 0)
                return r;
        if (flags & VARLINK_CALL_ONEWAY) {
                r = add_true(root, "oneway");
                if (r < 0)
                        return r;
        }
        if (flags & VARLINK_CALL_MORE) {
                r = add_true(root, "more");
                if (r < 0)
                        return r;
        }
        if (flags & VARLINK_CALL_UPGRADE) {
                r = add_true(root, "upgrade");
                if (r < 0)
                        return r;
        }
        return message_finish(root, ret, ret_size);
}

int varlink_reply_format(json_object *parameters, bool continues, char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        int r;

        if (!ret)
                return -EINVAL;

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;
        r = add_parameters(root, parameters);
        if (r < 0)
                return r;
        if (continues) {
                r = add_true(root, "continues");
                if (r < 0)
                        return r;
        }
        return message_finish(root, ret, ret_size);
}

int varlink_error_format(const char *error, json_object *parameters, char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        int r;

        if (!ret || !varlink_qualified_name_is_valid(error))
                return -EINVAL;

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;
        r = add_string(root, "error", error);
        if (r < 0)
                return r;
        r = add_parameters(root, parameters);
        if (r < 0)
                return r;
        return message_finish(root, ret, ret_size);
}

int varlink_error_invalid_parameter_format(const char *parameter, char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *p = NULL;
        int r;

        if (!parameter || !ret)
                return -EINVAL;

        p = json_object_new_object();
        if (!p)
                return -ENOMEM;
        r = add_string(p, "parameter", parameter);
        if (r < 0)
                return r;
        return varlink_error_format(VARLINK_ERROR_INVALID_PARAMETER, p, ret, ret_size);
}

/* ---- Parameter extraction ------------------------------------------------ */

static const VarlinkField *field_find(const VarlinkField fields[], const char *name) {
        for (const VarlinkField *f = fields; f->name; f++)
                if (streq(f->name, name))
                        return f;
        return NULL;
}

/*
 * An integer within [INT64_MIN + 1, INT64_MAX]. json-c keeps integers above
 * INT64_MAX as uint64 (saturating at UINT64_MAX), but saturates those below
 * INT64_MIN to INT64_MIN silently, so that value cannot be trusted.
 */
static bool json_int64_get(json_object *v, int64_t *ret) {
        int64_t i;

        if (!json_object_is_type(v, json_type_int))
                return false;
        i = json_object_get_int64(v);
        if (i == INT64_MAX && json_object_get_uint64(v) != (uint64_t) INT64_MAX)
                return false;
        if (i == INT64_MIN)
                return false;
        *ret = i;
        return true;
}

static bool field_value_ok(const VarlinkField *f, json_object *v) {
        int64_t i;

        switch (f->type) {
        case VARLINK_FIELD_STRING:
                return json_string_clean(v, NULL);
        case VARLINK_FIELD_INT:
                return json_int64_get(v, &i);
        case VARLINK_FIELD_UINT32:
                return json_int64_get(v, &i) && i >= 0 && i <= (int64_t) UINT32_MAX;
        case VARLINK_FIELD_BOOL:
                return json_object_is_type(v, json_type_boolean);
        case VARLINK_FIELD_FLOAT:
                return json_object_is_type(v, json_type_double) ||
                        json_int64_get(v, &i);
        case VARLINK_FIELD_OBJECT:
                return json_object_is_type(v, json_type_object);
        case VARLINK_FIELD_ARRAY:
                return json_object_is_type(v, json_type_array);
        case VARLINK_FIELD_ANY:
                return true;
        }
        return false;
}

static void field_store(const VarlinkField *f, json_object *v) {
        int64_t i = 0;

        if (!f->ret)
                return;
        switch (f->type) {
        case VARLINK_FIELD_STRING:
                *(const char **) f->ret = json_object_get_string(v);
                break;
        case VARLINK_FIELD_INT:
                (void) json_int64_get(v, &i);
                *(int64_t *) f->ret = i;
                break;
        case VARLINK_FIELD_UINT32:
                (void) json_int64_get(v, &i);
                *(uint32_t *) f->ret = (uint32_t) i;
                break;
        case VARLINK_FIELD_BOOL:
                *(bool *) f->ret = json_object_get_boolean(v);
                break;
        case VARLINK_FIELD_FLOAT:
                *(double *) f->ret = json_object_get_double(v);
                break;
        case VARLINK_FIELD_OBJECT:
        case VARLINK_FIELD_ARRAY:
        case VARLINK_FIELD_ANY:
                *(json_object **) f->ret = v;
                break;
        }
}

int varlink_params_extract(json_object *parameters, const VarlinkField fields[],
                           const char **reterr_parameter) {
        const char *bad = NULL;

        if (!fields || !json_object_is_type(parameters, json_type_object))
                return -EINVAL;

        /* First check everything, so outputs stay untouched on failure. */
        json_object_object_foreach(parameters, key, v) {
                const VarlinkField *f = field_find(fields, key);

                if (!f) {
                        bad = key;
                        goto invalid;
                }
                /* null is Varlink's "absent" for an optional (?type) field. */
                if (!v || json_object_is_type(v, json_type_null)) {
                        if (f->flags & VARLINK_FIELD_REQUIRED) {
                                bad = f->name;
                                goto invalid;
                        }
                        continue;
                }
                if (!field_value_ok(f, v)) {
                        bad = f->name;
                        goto invalid;
                }
        }
        for (const VarlinkField *f = fields; f->name; f++) {
                json_object *fv;

                if (!(f->flags & VARLINK_FIELD_REQUIRED))
                        continue;
                if (!json_object_object_get_ex(parameters, f->name, &fv) ||
                    json_object_is_type(fv, json_type_null)) {
                        bad = f->name;
                        goto invalid;
                }
        }

        for (const VarlinkField *f = fields; f->name; f++) {
                json_object *fv;

                if (json_object_object_get_ex(parameters, f->name, &fv) &&
                    !json_object_is_type(fv, json_type_null))
                        field_store(f, fv);
        }
        return 0;

invalid:
        if (reterr_parameter)
                *reterr_parameter = bad;
        return -EINVAL;
}
