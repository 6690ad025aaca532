/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Internal to libsecclient: not installed, not exported. */

#include "macro.h"
#include "secclient.h"

/* Marks a function exported from libsecclient.so (also listed in secclient.sym). */
#define _public_ __attribute__((visibility("default")))
