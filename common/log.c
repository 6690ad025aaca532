/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>

#include "log.h"

static const char *log_ident = "secd";
static LogTarget log_target = LOG_TARGET_STDERR;
static int log_max_level = LOG_INFO;

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(const char *ident, LogTarget target) {
        if (ident)
                log_ident = ident;
        if (target == LOG_TARGET_AUTO)
                target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
        log_target = target;
}

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

bool log_to_journal(void) {
        return log_target == LOG_TARGET_JOURNAL;
}

static void log_emit(int level, int error, const char *file, int line, const char *func,
                     const char *text, va_list *fields) {
        if (log_target == LOG_TARGET_JOURNAL) {
                char prio[] = "PRIORITY=0";
                char errbuf[32];
                struct iovec iov[64];
                size_t n = 0;
                _cleanup_free_ char *msg = NULL;

                prio[9] = (char) ('0' + (level & 7));
                if (asprintf(&msg, "MESSAGE=%s", text) < 0)
                        return;
                iov[n++] = (struct iovec) { msg, strlen(msg) };
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                if (error != 0) {
                        (void) snprintf(errbuf, sizeof errbuf, "ERRNO=%d", abs(error));
                        iov[n++] = (struct iovec) { errbuf, strlen(errbuf) };
                }
                if (fields) {
                        const char *f;
                        while (n < ELEMENTSOF(iov) && (f = va_arg(*fields, const char *)))
                                iov[n++] = (struct iovec) { (void *) f, strlen(f) };
                }
                char cf[256], cl[32], cfn[128];
                (void) snprintf(cf, sizeof cf, "CODE_FILE=%s", file);
                (void) snprintf(cl, sizeof cl, "CODE_LINE=%d", line);
                (void) snprintf(cfn, sizeof cfn, "CODE_FUNC=%s", func);
                if (n + 3 <= ELEMENTSOF(iov)) {
                        iov[n++] = (struct iovec) { cf, strlen(cf) };
                        iov[n++] = (struct iovec) { cl, strlen(cl) };
                        iov[n++] = (struct iovec) { cfn, strlen(cfn) };
                }
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        return;
                /* Journal unreachable: fall through to stderr rather than lose it. */
        }

        (void) fprintf(stderr, "%s: %s\n", log_ident, text);
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) {
        char buf[2048];
        int saved = errno;
        va_list ap;

        if (level > log_max_level)
                return error == 0 ? 0 : -abs(error);

        /* Make %m print the error passed in, not whatever errno happens to be. */
        errno = error != 0 ? abs(error) : saved;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        log_emit(level, error, file, line, func, buf, NULL);
        errno = saved;
        return error == 0 ? 0 : -abs(error);
}

int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *message, ...) {
        va_list fields;

        if (level > log_max_level)
                return error == 0 ? 0 : -abs(error);

        va_start(fields, message);
        log_emit(level, error, file, line, func, message, &fields);
        va_end(fields);
        return error == 0 ? 0 : -abs(error);
}
