/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "macro.h"

/*
 * Is this Ed25519 public key one of the points of small order (order 1, 2,
 * 4 or 8), in any encoding (canonical or y >= p, either sign bit)? Under
 * such a key signatures can be forged without any private key (for the
 * identity, R = identity and S = 0 verifies every message under nettle's
 * ed25519_sha512_verify()): a signature by it proves nothing. secd refuses
 * these keys as mailboxes, and libsecclient refuses bundles signed by them.
 */
bool ed25519_key_is_small_order(const uint8_t key[32]) _pure_;
