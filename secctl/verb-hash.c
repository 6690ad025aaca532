/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secctl hash FILE...: the SHA-256 of files, computed by the same code secd
 * uses for executables, printed exactly as sha256sum(1) prints it so
 * administrators can paste hashes into rules.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "exe-hash.h"
#include "log.h"
#include "secctl.h"

int ctl_hash_file(const char *path, char ret[SHA256_HEX_LEN + 1]) {
        _cleanup_close_ int fd = -EBADF;
        uint8_t digest[SHA256_DIGEST_LEN];
        struct stat st;
        int r;

        /* O_NONBLOCK: never hang on a FIFO; regular files ignore it. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;

        /* No size cap here: this is the administrator's own read, not a client's request. */
        r = exe_hash_fd(fd, &st, UINT64_MAX, digest);
        if (r < 0)
                return r;
        hex_encode(digest, sizeof digest, ret);
        return 0;
}

/* Like sha256sum: a name with '\\', '\n' or '\r' is escaped and the line starts with '\\'. */
void ctl_hash_print_line(FILE *f, const char *path, const char hex[SHA256_HEX_LEN + 1]) {
        bool escape = strpbrk(path, "\\\n\r");

        fprintf(f, "%s%s  ", escape ? "\\" : "", hex);
        if (!escape) {
                fputs(path, f);
        } else
                for (const char *p = path; *p; p++)
                        switch (*p) {
                        case '\\':
                                fputs("\\\\", f);
                                break;
                        case '\n':
                                fputs("\\n", f);
                                break;
                        case '\r':
                                fputs("\\r", f);
                                break;
                        default:
                                fputc(*p, f);
                        }
        fputc('\n', f);
}

static const char *hash_strerror(int r) {
        switch (r) {
        case -EBADFD:
                return "Not a regular file";
        case -ESTALE:
                return "File changed while it was being read";
        default:
                return strerror(-r);
        }
}

int ctl_verb_hash(CtlContext *ctx) {
        _cleanup_json_ json_object *array = NULL;
        bool failed = false;
        int r;

        if (ctx->json) {
                array = json_object_new_array();
                if (!array)
                        return log_oom(), CTL_EXIT_FAILURE;
        }

        for (int i = 0; i < ctx->n_args; i++) {
                const char *path = ctx->args[i];
                char hex[SHA256_HEX_LEN + 1];

                r = ctl_hash_file(path, hex);
                if (r < 0) {
                        /* Keep going like sha256sum; the exit status says something failed. */
                        (void) fflush(ctx->out);
                        log_error("%s: %s", path, hash_strerror(r));
                        failed = true;
                        continue;
                }

                if (!array) {
                        ctl_hash_print_line(ctx->out, path, hex);
                        continue;
                }

                json_object *o = json_object_new_object();
                if (!o || json_object_array_add(array, o) < 0) {
                        json_object_put(o);
                        return log_oom(), CTL_EXIT_FAILURE;
                }
                if (json_object_object_add(o, "path", json_object_new_string(path)) < 0 ||
                    json_object_object_add(o, "sha256", json_object_new_string(hex)) < 0)
                        return log_oom(), CTL_EXIT_FAILURE;
        }

        if (array)
                ctl_json_print(ctx->out, array);
        return failed ? CTL_EXIT_FAILURE : CTL_EXIT_SUCCESS;
}
