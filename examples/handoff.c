/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Credential hand-over: a parent enrolls, starts a child (this same program,
 * so the certificate's executable hash fits the child too) and hands it the
 * credentials over an inherited socketpair. The child connects and pings.
 * The key never appears in argv, the environment or a file: only the fd
 * number is passed on the command line.
 *
 *   handoff            the parent
 *   handoff --child FD the child (started by the parent)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <secclient.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(secclient *c, const char *who, const char *what, int r) {
        const char *note = secclient_last_error(c);

        fprintf(stderr, "handoff %s: %s: %s%s%s\n", who, what, secclient_strerror(r), note ? ": " : "",
                note ? note : "");
        secclient_free(c);
        return 1;
}

static int child(const char *fd_arg) {
        secclient *c = NULL;
        char *end;
        long fd;
        int r;

        errno = 0;
        fd = strtol(fd_arg, &end, 10);
        if (errno != 0 || *end != '\0' || fd < 0 || fd > 65535) {
                fprintf(stderr, "handoff child: bad fd '%s'\n", fd_arg);
                return 2;
        }

        r = secclient_new(&c);
        if (r < 0)
                return fail(c, "child", "new", r);
        r = secclient_creds_recv(c, (int) fd);
        close((int) fd);
        if (r < 0)
                return fail(c, "child", "receive credentials", r);
        r = secclient_connect(c);
        if (r < 0)
                return fail(c, "child", "connect", r);
        r = secclient_ping(c, "child", 5);
        if (r < 0)
                return fail(c, "child", "ping", r);
        printf("handoff child: received credentials, connected and pinged secd\n");
        secclient_free(c);
        return 0;
}

static int parent(void) {
        secclient *c = NULL;
        int sv[2], status, r;
        char fd_arg[16], self[PATH_MAX];
        ssize_t n;
        pid_t pid;

        /* This program's own path, for the child (read before fork, not through argv[0]). */
        n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0) {
                perror("handoff parent: readlink /proc/self/exe");
                return 1;
        }
        self[n] = '\0';

        r = secclient_new(&c);
        if (r < 0)
                return fail(c, "parent", "new", r);
        r = secclient_enroll(c);
        if (r < 0)
                return fail(c, "parent", "enroll", r);

        /* SOCK_SEQPACKET: the bundle is one message, all of it or nothing. */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return fail(c, "parent", "socketpair", -errno);

        pid = fork();
        if (pid < 0)
                return fail(c, "parent", "fork", -errno);
        if (pid == 0) {
                char *args[] = { "handoff", "--child", fd_arg, NULL };

                /* Only the child's end crosses exec. */
                close(sv[0]);
                if (fcntl(sv[1], F_SETFD, 0) < 0)
                        _exit(127);
                snprintf(fd_arg, sizeof fd_arg, "%d", sv[1]);
                execv(self, args);
                _exit(127);
        }
        close(sv[1]);

        r = secclient_creds_send(c, sv[0]);
        close(sv[0]);
        if (r < 0) {
                (void) waitpid(pid, NULL, 0);
                return fail(c, "parent", "send credentials", r);
        }
        secclient_free(c);

        if (waitpid(pid, &status, 0) < 0) {
                perror("handoff parent: waitpid");
                return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "handoff parent: the child failed\n");
                return 1;
        }
        printf("handoff parent: enrolled and handed the credentials to child %d\n", (int) pid);
        return 0;
}

int main(int argc, char **argv) {
        if (argc == 3 && strcmp(argv[1], "--child") == 0)
                return child(argv[2]);
        if (argc != 1) {
                fprintf(stderr, "usage: %s\n", argv[0]);
                return 2;
        }
        return parent();
}
