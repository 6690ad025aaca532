/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Bounded string parsing shared by every module. All return 0 or -errno. */

#include "macro.h"

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 64

/* Lower-case hex of len bytes into out, which must hold 2*len+1 bytes. */
void hex_encode(const uint8_t *data, size_t len, char *out);

/*
 * Decode exactly 2*len hex characters (either case) from s into out.
 * -EINVAL if s is not exactly that long or has a non-hex character.
 */
int hex_decode_exact(const char *s, uint8_t *out, size_t len);

/* Decimal integers: no sign, no whitespace, no trailing garbage, in range. */
int parse_uint64(const char *s, uint64_t *ret);
int parse_uint32(const char *s, uint32_t *ret);
/* A uid/gid: decimal, and never (uid_t) -1, which means "unset" to the kernel. */
int parse_uid(const char *s, uint32_t *ret);

/*
 * Durations such as "90", "90s", "15m", "1h", "7d", or combinations "1h30m";
 * result in microseconds. -EINVAL on malformed input, -ERANGE on overflow.
 */
int parse_duration_usec(const char *s, uint64_t *ret);

/* Sizes such as "4096", "64K", "1M", "2G" (binary units); result in bytes. */
int parse_size(const char *s, uint64_t *ret);

/* True if s is valid UTF-8 with no NUL and no C0 control except \t. */
bool string_is_printable_utf8(const char *s, size_t len);
