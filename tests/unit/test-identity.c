/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "exe-hash.h"
#include "identity.h"

static char tmpdir[] = "/tmp/test-identity-XXXXXX";

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static int setup(void **state) {
        if (!mkdtemp(tmpdir))
                return -1;
        /* Peers under other uids must reach the socket inside. */
        return chmod(tmpdir, 0755);
}

static int teardown(void **state) {
        return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Valgrind 3.19 (Debian 12) implements neither pidfd_open() nor
 * pidfd_send_signal(). Without pidfd_open() process_identity_from_pid()
 * rightly fails (-ENOSYS): nothing could prove liveness. Those checks are
 * skipped there, and run everywhere else.
 */
static bool have_pidfd_open(void) {
        int fd = (int) syscall(SYS_pidfd_open, getpid(), 0);

        if (fd < 0)
                return errno != ENOSYS;
        safe_close(fd);
        return true;
}

static void require_pidfd_open(void) {
        if (!have_pidfd_open()) {
                print_message("pidfd_open() not implemented here (valgrind?): skipped\n");
                skip();
        }
}

static void sleep_ms(unsigned ms) {
        (void) nanosleep(&(struct timespec) { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L }, NULL);
}

static void socket_address(const char *name, struct sockaddr_un *sa) {
        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        assert_true((size_t) snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s", tmpdir, name) < sizeof sa->sun_path);
}

static int listen_socket(const char *name) {
        struct sockaddr_un sa;
        int fd;

        socket_address(name, &sa);
        (void) unlink(sa.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(chmod(sa.sun_path, 0777), 0);
        assert_int_equal(listen(fd, 8), 0);
        return fd;
}

/* Child side: connect, or exit with a code the parent reports. */
static int child_connect_path(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof sa.sun_path)
                _exit(10);
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                _exit(11);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                _exit(12);
        return fd;
}

static int child_connect(const char *name) {
        char path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];

        if ((size_t) snprintf(path, sizeof path, "%s/%s", tmpdir, name) >= sizeof path)
                _exit(10);
        return child_connect_path(path);
}

/* Child side: hold the connection until the parent closes its end. */
static _noreturn_ void child_wait_for_eof(int fd) {
        char c;

        while (read(fd, &c, 1) > 0)
                ;
        _exit(0);
}

/* Parent side: accept within 10 s, so a child that failed cannot hang the test. */
static int accept_bounded(int listen_fd) {
        struct pollfd p = { .fd = listen_fd, .events = POLLIN };
        int fd;

        assert_int_equal(poll(&p, 1, 10000), 1);
        fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(fd >= 0);
        return fd;
}

static void reap_ok(pid_t pid) {
        int status;

        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void assert_groups_equal_ours(const ProcessIdentity *id) {
        gid_t groups[NGROUPS_MAX];
        int n = getgroups(ELEMENTSOF(groups), groups);

        assert_true(n >= 0);
        assert_int_equal(id->n_supplementary_gids, (size_t) n);
        for (int i = 0; i < n; i++) {
                bool found = false;

                for (size_t j = 0; j < id->n_supplementary_gids; j++)
                        found = found || id->supplementary_gids[j] == groups[i];
                assert_true(found);
        }
}

static void assert_is_this_process(const ProcessIdentity *id) {
        char self[PATH_MAX + 1];
        struct stat st;
        ssize_t n;

        assert_int_equal(id->pid, getpid());
        assert_int_equal(id->uid, geteuid());
        assert_int_equal(id->gid, getegid());
        assert_groups_equal_ours(id);

        n = readlink("/proc/self/exe", self, sizeof self - 1);
        assert_true(n > 0);
        self[n] = 0;
        if (RUNNING_ON_VALGRIND) {
                /* The image really running is valgrind's tool; valgrind fakes only our readlink(). */
                assert_true(id->exe_path[0] == '/');
                assert_int_equal(stat(id->exe_path, &st), 0);
                assert_int_equal(id->exe_stat.st_ino, st.st_ino);
                n = (ssize_t) strlen(id->exe_path);
                assert_true((size_t) n < sizeof self);
                memcpy(self, id->exe_path, (size_t) n + 1);
        } else
                assert_string_equal(id->exe_path, self);
        assert_false(id->exe_deleted);

        assert_true(id->exe_fd >= 0);
        assert_true(id->pidfd >= 0);
        assert_int_equal(stat(self, &st), 0);
        assert_int_equal(id->exe_stat.st_dev, st.st_dev);
        assert_int_equal(id->exe_stat.st_ino, st.st_ino);
        assert_int_equal(id->tracer_pid, 0);
        assert_true(id->initial_userns);
        assert_int_equal(process_identity_verify_alive(id), 0);
}

static void test_socketpair_self(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        int pair[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        assert_int_equal(process_identity_from_socket(pair[0], &id), 0);
        assert_is_this_process(id);
        safe_close(pair[0]);
        safe_close(pair[1]);
}

/* The caller's SO_PEERCRED is taken as it is; the groups only when asked for. */
static void test_known_peer_without_groups(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL, *with = NULL;
        struct ucred cred, bogus;
        socklen_t len = sizeof cred;
        int pair[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        assert_int_equal(getsockopt(pair[0], SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
        assert_int_equal(process_identity_from_socket_full(pair[0], &cred, false, &id), 0);
        assert_int_equal(id->pid, getpid());
        assert_int_equal(id->uid, geteuid());
        assert_int_equal(id->gid, getegid());
        assert_null(id->supplementary_gids);
        assert_int_equal(id->n_supplementary_gids, 0);
        assert_int_equal(process_identity_verify_alive(id), 0);
        assert_int_equal(process_identity_from_socket_full(pair[0], &cred, true, &with), 0);
        assert_is_this_process(with);

        /* What a caller hands in is still checked like what the kernel says. */
        bogus = cred;
        bogus.pid = 0;
        assert_int_equal(process_identity_from_socket_full(pair[0], &bogus, false, &id), -ESRCH);
        bogus = cred;
        bogus.uid = (uid_t) -1;
        assert_int_equal(process_identity_from_socket_full(pair[0], &bogus, false, &id), -EBADMSG);
        assert_int_equal(process_identity_from_socket_full(-1, &cred, false, &id), -EBADF);
        safe_close(pair[0]);
        safe_close(pair[1]);
}

static void test_dgram_socketpair_self(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        int pair[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
        assert_int_equal(process_identity_from_socket(pair[1], &id), 0);
        assert_is_this_process(id);
        safe_close(pair[0]);
        safe_close(pair[1]);
}

static void test_from_pid_self(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;

        require_pidfd_open();

        assert_int_equal(process_identity_from_pid(getpid(), &id), 0);
        assert_is_this_process(id);

        assert_int_equal(process_identity_from_pid(0, &id), -EINVAL);
        assert_int_equal(process_identity_from_pid(-1, &id), -EINVAL);
}

static void test_exe_hash_of_identity(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        uint8_t a[SHA256_DIGEST_LEN], b[SHA256_DIGEST_LEN];
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int pair[2];

        /* The opened magic link hashes like the file itself. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        assert_int_equal(process_identity_from_socket(pair[0], &id), 0);
        safe_close(pair[0]);
        safe_close(pair[1]);
        assert_int_equal(exe_hash_fd(id->exe_fd, &id->exe_stat, EXE_HASH_MAX_SIZE_DEFAULT, a), 0);
        fd = open(id->exe_path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, b), 0);
        assert_memory_equal(a, b, sizeof a);
}

static void test_other_uid(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL, *by_pid = NULL;
        static const gid_t groups[] = { 65534, 100 };
        _cleanup_close_ int lfd = -EBADF, cfd = -EBADF;
        pid_t pid;

        if (geteuid() != 0)
                skip();

        lfd = listen_socket("other-uid");
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (setgroups(ELEMENTSOF(groups), groups) < 0)
                        _exit(20);
                if (setresgid(65534, 65534, 65534) < 0)
                        _exit(21);
                if (setresuid(65534, 65534, 65534) < 0)
                        _exit(22);
                child_wait_for_eof(child_connect("other-uid"));
        }

        cfd = accept_bounded(lfd);
        assert_int_equal(process_identity_from_socket(cfd, &id), 0);
        assert_int_equal(id->pid, pid);
        assert_int_equal(id->uid, 65534);
        assert_int_equal(id->gid, 65534);
        /* The kernel sorts the groups; compare as a set. */
        assert_int_equal(id->n_supplementary_gids, 2);
        assert_true((id->supplementary_gids[0] == 100 && id->supplementary_gids[1] == 65534) ||
                    (id->supplementary_gids[0] == 65534 && id->supplementary_gids[1] == 100));
        assert_int_equal(id->tracer_pid, 0);
        assert_true(id->initial_userns);
        assert_int_equal(process_identity_verify_alive(id), 0);

        /* /proc/<pid>/status says the same. */
        if (have_pidfd_open()) {
                assert_int_equal(process_identity_from_pid(pid, &by_pid), 0);
                assert_int_equal(by_pid->uid, 65534);
                assert_int_equal(by_pid->gid, 65534);
                assert_int_equal(by_pid->n_supplementary_gids, 2);
                assert_true((by_pid->supplementary_gids[0] == 100 && by_pid->supplementary_gids[1] == 65534) ||
                            (by_pid->supplementary_gids[0] == 65534 && by_pid->supplementary_gids[1] == 100));
                assert_int_equal(by_pid->exe_stat.st_ino, id->exe_stat.st_ino);
        }

        cfd = safe_close(cfd);
        reap_ok(pid);

        /* Gone: the identity we hold no longer proves anything. */
        assert_int_equal(process_identity_verify_alive(id), -ESRCH);
}

static void test_peer_exited_and_reaped(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        _cleanup_close_ int lfd = -EBADF, cfd = -EBADF;
        pid_t pid;

        lfd = listen_socket("exited");
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) child_connect("exited");
                _exit(0);
        }

        reap_ok(pid);
        cfd = accept_bounded(lfd);
        assert_int_equal(process_identity_from_socket(cfd, &id), -ESRCH);
        assert_null(id);
}

static void test_peer_exited_zombie(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        _cleanup_close_ int lfd = -EBADF, cfd = -EBADF;
        siginfo_t si = {};
        pid_t pid;

        lfd = listen_socket("zombie");
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) child_connect("zombie");
                _exit(0);
        }

        /* Exited but not reaped: its pid still exists, its process does not. */
        assert_int_equal(waitid(P_PID, (id_t) pid, &si, WEXITED | WNOWAIT), 0);
        cfd = accept_bounded(lfd);
        assert_int_equal(process_identity_from_socket(cfd, &id), -ESRCH);
        assert_null(id);
        if (have_pidfd_open())
                assert_int_equal(process_identity_from_pid(pid, &id), -ESRCH);
        reap_ok(pid);
        if (have_pidfd_open())
                assert_int_equal(process_identity_from_pid(pid, &id), -ESRCH);
}

static void test_traced_peer(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *before = NULL, *after = NULL;
        _cleanup_close_ int lfd = -EBADF, cfd = -EBADF;
        pid_t pid;

        lfd = listen_socket("traced");
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                child_wait_for_eof(child_connect("traced"));

        cfd = accept_bounded(lfd);
        assert_int_equal(process_identity_from_socket(cfd, &before), 0);
        assert_int_equal(before->tracer_pid, 0);

        /* SEIZE attaches without stopping the tracee. */
        if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) < 0) {
                kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                fail_msg("PTRACE_SEIZE: %s", strerror(errno));
        }
        assert_int_equal(process_identity_from_socket(cfd, &after), 0);
        assert_int_equal(after->pid, pid);
        assert_int_equal(after->tracer_pid, getpid());
        after = process_identity_free(after);

        /*
         * Held in ptrace stop, /proc reports "t (tracing stop)": still an identity
         * with its tracer, not a parse failure that hides the facts.
         */
        assert_int_equal(ptrace(PTRACE_INTERRUPT, pid, NULL, NULL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, __WALL), pid);
        assert_true(WIFSTOPPED(status));
        assert_int_equal(process_identity_from_socket(cfd, &after), 0);
        assert_int_equal(after->pid, pid);
        assert_int_equal(after->tracer_pid, getpid());
        assert_int_equal(ptrace(PTRACE_DETACH, pid, NULL, NULL), 0);

        cfd = safe_close(cfd);
        reap_ok(pid);
}

static void test_peer_in_other_userns(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        _cleanup_close_ int lfd = -EBADF, cfd = -EBADF;
        int ready[2], status;
        char c;
        pid_t pid;

        lfd = listen_socket("userns");
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                safe_close(ready[0]);
                if (unshare(CLONE_NEWUSER) < 0)
                        _exit(40);      /* not permitted here: the parent skips */
                if (write(ready[1], "u", 1) != 1)
                        _exit(41);
                child_wait_for_eof(child_connect("userns"));
        }
        ready[1] = safe_close(ready[1]);
        if (read(ready[0], &c, 1) != 1) {
                safe_close(ready[0]);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 40);
                skip();
        }
        safe_close(ready[0]);

        cfd = accept_bounded(lfd);
        assert_int_equal(process_identity_from_socket(cfd, &id), 0);
        assert_int_equal(id->pid, pid);
        assert_false(id->initial_userns);
        /* Credentials are reported in our namespace: still the uid that forked it. */
        assert_int_equal(id->uid, geteuid());

        cfd = safe_close(cfd);
        reap_ok(pid);
}

static void copy_file(const char *from, const char *to, mode_t mode) {
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        char buf[65536];
        ssize_t n;

        assert_true(in >= 0 && out >= 0);
        while ((n = read(in, buf, sizeof buf)) > 0)
                assert_int_equal(write(out, buf, (size_t) n), n);
        assert_int_equal(n, 0);
}

static void test_deleted_executable(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        uint8_t original[SHA256_DIGEST_LEN], seen[SHA256_DIGEST_LEN];
        char path[PATH_MAX], link[PATH_MAX + 32], expected[PATH_MAX + 32], proc[64];
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        unsigned tries = 0;
        pid_t pid;

        require_pidfd_open();
        assert_true((size_t) snprintf(path, sizeof path, "%s/sleep-copy", tmpdir) < sizeof path);
        copy_file("/bin/sleep", path, 0755);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, original), 0);
        fd = safe_close(fd);

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execl(path, "sleep-copy", "60", (char *) NULL);
                _exit(30);
        }

        /* Wait (bounded) until the child runs the copy, then delete it under it. */
        snprintf(proc, sizeof proc, "/proc/%d/exe", (int) pid);
        for (;;) {
                ssize_t n = readlink(proc, link, sizeof link - 1);

                if (n > 0) {
                        link[n] = 0;
                        if (streq(link, path))
                                break;
                }
                if (++tries > 1000) {
                        kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        fail_msg("child never ran %s", path);
                }
                sleep_ms(5);
        }
        assert_int_equal(unlink(path), 0);

        assert_int_equal(process_identity_from_pid(pid, &id), 0);
        assert_true(id->exe_deleted);
        snprintf(expected, sizeof expected, "%s (deleted)", path);
        assert_string_equal(id->exe_path, expected);
        assert_int_equal(id->exe_stat.st_nlink, 0);
        assert_int_equal(exe_hash_fd(id->exe_fd, &id->exe_stat, EXE_HASH_MAX_SIZE_DEFAULT, seen), 0);
        assert_memory_equal(seen, original, sizeof seen);

        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        assert_int_equal(process_identity_verify_alive(id), -ESRCH);
}

/* The same over a socket, the way secd meets it: a peer whose binary was replaced under it. */
static void test_deleted_executable_peer(void **state) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        uint8_t original[SHA256_DIGEST_LEN], seen[SHA256_DIGEST_LEN];
        char path[PATH_MAX], expected[PATH_MAX + 32];
        struct sockaddr_un sa;
        _cleanup_close_ int fd = -EBADF, lfd = -EBADF, cfd = -EBADF;
        _cleanup_free_ char *self = NULL;
        struct stat st;
        pid_t pid;

        self = realpath("/proc/self/exe", NULL);
        assert_non_null(self);
        assert_true((size_t) snprintf(path, sizeof path, "%s/peer-copy", tmpdir) < sizeof path);
        copy_file(self, path, 0755);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(exe_hash_fd(fd, &st, EXE_HASH_MAX_SIZE_DEFAULT, original), 0);
        fd = safe_close(fd);

        lfd = listen_socket("deleted-peer");
        socket_address("deleted-peer", &sa);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execl(path, "peer-copy", "--connect-and-wait", sa.sun_path, (char *) NULL);
                _exit(30);
        }

        /* It connected, so it runs the copy: delete the copy under it. */
        cfd = accept_bounded(lfd);
        assert_int_equal(unlink(path), 0);

        assert_int_equal(process_identity_from_socket(cfd, &id), 0);
        assert_int_equal(id->pid, pid);
        assert_true(id->exe_deleted);
        snprintf(expected, sizeof expected, "%s (deleted)", path);
        assert_string_equal(id->exe_path, expected);
        assert_int_equal(id->exe_stat.st_nlink, 0);
        assert_int_equal(exe_hash_fd(id->exe_fd, &id->exe_stat, EXE_HASH_MAX_SIZE_DEFAULT, seen), 0);
        assert_memory_equal(seen, original, sizeof seen);

        cfd = safe_close(cfd);
        reap_ok(pid);
}

static void test_bad_fds(void **state) {
        ProcessIdentity *id = NULL;
        _cleanup_close_ int file = -EBADF, unconnected = -EBADF, lfd = -EBADF, inet = -EBADF;
        int pipefd[2];

        file = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        assert_true(file >= 0);
        assert_int_equal(process_identity_from_socket(file, &id), -ENOTSOCK);

        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        assert_int_equal(process_identity_from_socket(pipefd[0], &id), -ENOTSOCK);
        safe_close(pipefd[0]);
        safe_close(pipefd[1]);

        unconnected = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(unconnected >= 0);
        assert_int_equal(process_identity_from_socket(unconnected, &id), -EINVAL);

        /* A listening socket would report its own credentials as "peer". */
        lfd = listen_socket("listening");
        assert_int_equal(process_identity_from_socket(lfd, &id), -EINVAL);

        inet = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(inet >= 0);
        assert_int_equal(process_identity_from_socket(inet, &id), -EINVAL);

        assert_int_equal(process_identity_from_socket(-1, &id), -EBADF);
        assert_int_equal(process_identity_from_socket(987654, &id), -EBADF);
        assert_null(id);

        assert_int_equal(process_identity_verify_alive(NULL), -EINVAL);
        assert_null(process_identity_free(NULL));
}

int main(int argc, char *argv[]) {
        /* Peer mode for test_deleted_executable_peer (a copy of this binary). */
        if (argc == 3 && streq(argv[1], "--connect-and-wait"))
                child_wait_for_eof(child_connect_path(argv[2]));

        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_socketpair_self),
                cmocka_unit_test(test_known_peer_without_groups),
                cmocka_unit_test(test_dgram_socketpair_self),
                cmocka_unit_test(test_from_pid_self),
                cmocka_unit_test(test_exe_hash_of_identity),
                cmocka_unit_test(test_other_uid),
                cmocka_unit_test(test_peer_exited_and_reaped),
                cmocka_unit_test(test_peer_exited_zombie),
                cmocka_unit_test(test_traced_peer),
                cmocka_unit_test(test_peer_in_other_userns),
                cmocka_unit_test(test_deleted_executable),
                cmocka_unit_test(test_deleted_executable_peer),
                cmocka_unit_test(test_bad_fds),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
