/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <inttypes.h>

#include "strutil.h"

void hex_encode(const uint8_t *data, size_t len, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[data[i] >> 4];
                out[2 * i + 1] = digits[data[i] & 0xf];
        }
        out[2 * len] = '\0';
}

static int unhex_char(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

int hex_decode_exact(const char *s, uint8_t *out, size_t len) {
        if (!s || strnlen(s, 2 * len + 1) != 2 * len)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                int hi = unhex_char(s[2 * i]), lo = unhex_char(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

int parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (isempty(s))
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (*p - '0'), &v))
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

int parse_uint32(const char *s, uint32_t *ret) {
        uint64_t v;
        int r = parse_uint64(s, &v);

        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int parse_uid(const char *s, uint32_t *ret) {
        uint32_t v;
        int r = parse_uint32(s, &v);

        if (r < 0)
                return r;
        if (v == UINT32_MAX)
                return -ERANGE;
        *ret = v;
        return 0;
}

typedef struct ScaleUnit {
        const char *suffix;
        uint64_t factor;
} ScaleUnit;

static int parse_scaled(const char *s, const ScaleUnit *units,
                        size_t n_units, bool allow_sequence, uint64_t *ret) {
        uint64_t total = 0;
        const char *p = s;

        if (isempty(s))
                return -EINVAL;
        while (*p) {
                uint64_t v = 0, factor = units[0].factor, part;
                const char *start = p;

                for (; *p >= '0' && *p <= '9'; p++)
                        if (__builtin_mul_overflow(v, 10, &v) ||
                            __builtin_add_overflow(v, (uint64_t) (*p - '0'), &v))
                                return -ERANGE;
                if (p == start)
                        return -EINVAL;
                if (*p) {
                        size_t i;
                        for (i = 1; i < n_units; i++) {
                                size_t l = strlen(units[i].suffix);
                                /* Longest match first is the caller's job (ms before m). */
                                if (strncmp(p, units[i].suffix, l) == 0 &&
                                    !(p[l] >= 'a' && p[l] <= 'z')) {
                                        factor = units[i].factor;
                                        p += l;
                                        break;
                                }
                        }
                        if (i == n_units)
                                return -EINVAL;
                }
                if (__builtin_mul_overflow(v, factor, &part) || __builtin_add_overflow(total, part, &total))
                        return -ERANGE;
                if (*p && !allow_sequence)
                        return -EINVAL;
        }
        *ret = total;
        return 0;
}

int parse_duration_usec(const char *s, uint64_t *ret) {
        static const ScaleUnit units[] = {
                { "",    UINT64_C(1000000) },
                { "ms",  UINT64_C(1000) },
                { "s",   UINT64_C(1000000) },
                { "min", UINT64_C(60000000) },
                { "m",   UINT64_C(60000000) },
                { "h",   UINT64_C(3600000000) },
                { "d",   UINT64_C(86400000000) },
        };
        return parse_scaled(s, units, ELEMENTSOF(units), true, ret);
}

int parse_size(const char *s, uint64_t *ret) {
        static const ScaleUnit units[] = {
                { "",  1 },
                { "K", UINT64_C(1) << 10 },
                { "M", UINT64_C(1) << 20 },
                { "G", UINT64_C(1) << 30 },
        };
        return parse_scaled(s, units, ELEMENTSOF(units), false, ret);
}

bool string_is_printable_utf8(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *) s, *end = p + len;

        while (p < end) {
                unsigned c = *p;
                size_t n;
                uint32_t cp;

                if (c < 0x80) {
                        if ((c < 0x20 && c != '\t') || c == 0x7f)
                                return false;
                        p++;
                        continue;
                }
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
                        return false;
                if ((size_t) (end - p) <= n)
                        return false;
                for (size_t i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                /* Reject overlong forms, surrogates and out-of-range code points. */
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                        return false;
                p += n + 1;
        }
        return true;
}
