/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging for the programs (secd, secctl). Libraries never log; they return
 * negative errno values and the program decides what to say.
 *
 * The target is the journal when stderr is connected to it (JOURNAL_STREAM
 * matches, as under systemd) or when forced, and stderr otherwise. Every
 * log_*_errno() call returns its negative error so callers can write
 * "return log_error_errno(r, ...)"; "%m" prints strerror(-r).
 */

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_STDERR,
        LOG_TARGET_JOURNAL,
} LogTarget;

/* Choose where messages go; AUTO picks the journal under systemd. */
void log_setup(const char *ident, LogTarget target);
void log_set_max_level(int level);
int log_get_max_level(void);
bool log_to_journal(void);

/* Core: logs when level <= max level; returns -abs(error) (or 0 if error == 0). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

/*
 * Structured entry: "FIELD=value" strings after the message, NULL-terminated.
 * The message is the MESSAGE= field; MESSAGE_ID= and friends go in the list.
 * On stderr only the message is printed.
 */
int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *message, ...) __attribute__((sentinel));

#define log_full_errno(level, error, ...)                                      \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) (void) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

#define log_struct(level, message, ...)                                        \
        log_struct_internal((level), 0, __FILE__, __LINE__, __func__, (message), __VA_ARGS__)
#define log_struct_errno(level, error, message, ...)                           \
        log_struct_internal((level), (error), __FILE__, __LINE__, __func__, (message), __VA_ARGS__)

/* Out-of-memory: logs and returns -ENOMEM. */
#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")
