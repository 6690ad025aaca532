/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers of the daemon that belong to no role. */

#include <sys/types.h>
#include <time.h>

#include "macro.h"

/* The clock in microseconds. */
uint64_t now_usec(clockid_t clock);

/* asprintf() that returns the string, or NULL when out of memory. */
char *strdup_printf(const char *format, ...) _printf_(1, 2);

/* mkdir -p; the last component gets mode, missing parents 0755. */
int mkdir_p(const char *path, mode_t mode);
