/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who is the peer of a Unix socket? The kernel's connect-time credentials,
 * then /proc/<pid> read through one directory fd, then proof through the
 * pidfd that the process we read is still the one that connected.
 *
 * Why the order is safe: the pidfd names one process P for good. /proc/<pid>
 * is opened by number, which could name another process only if P had exited
 * and its pid had been reused before the open. Everything is read through
 * that one directory fd (procfs pins it to the process it was opened for),
 * and only afterwards is P checked to be alive: if P is still alive then, it
 * was alive at the open, so the number named P and every read was about P.
 *
 * With SO_PEERPIDFD (Linux >= 6.5) the pidfd is the connecting process by
 * construction. Without it we fall back to pidfd_open(pid), which has a race
 * we can narrow but not close: if the peer exits and its pid is reused
 * between connect() and pidfd_open(), the pidfd names the newcomer and the
 * liveness check passes for it. The window is the time between the peer's
 * connect and our accept-side call, and the newcomer would also have to
 * look like an allowed client; SO_PEERPIDFD closes it.
 */

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "identity.h"
#include "strutil.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* /proc/<pid>/status is a few KiB, plus up to ~11 bytes per supplementary group. */
#define PROC_STATUS_MAX ((size_t) 1 << 20)
/* d_path() works within one page; 64 KiB covers every page size Linux has. */
#define EXE_LINK_MAX ((size_t) 64 << 10)
#define DELETED_SUFFIX " (deleted)"
/* include/linux/proc_ns.h: the inode number of init_user_ns, fixed since Linux 3.8. */
#define PROC_USER_INIT_INO UINT64_C(0xEFFFFFFD)

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static int sys_pidfd_open(pid_t pid) {
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        return fd < 0 ? negative_errno() : fd;
}

ProcessIdentity *process_identity_free(ProcessIdentity *id) {
        if (!id)
                return NULL;
        safe_close(id->pidfd);
        safe_close(id->exe_fd);
        free(id->supplementary_gids);
        free(id->exe_path);
        free(id);
        return NULL;
}

static int process_identity_new(pid_t pid, ProcessIdentity **ret) {
        ProcessIdentity *id;

        id = calloc(1, sizeof *id);
        if (!id)
                return -ENOMEM;
        id->pid = pid;
        id->pidfd = -EBADF;
        id->exe_fd = -EBADF;
        *ret = id;
        return 0;
}

int process_identity_verify_alive(const ProcessIdentity *id) {
        struct pollfd p;
        int r;

        if (!id || id->pidfd < 0)
                return -EINVAL;

        /*
         * A pidfd polls readable once its process has exited: a zombie and a
         * reaped process alike (the kernel's thread_group_exited(), since
         * pidfds can be polled, Linux 5.3). One call, no signal needed; a
         * process whose leader thread exited while others run is alive.
         */
        p = (struct pollfd) { .fd = id->pidfd, .events = POLLIN };
        r = poll(&p, 1, 0);
        if (r < 0)
                return negative_errno();
        if (r > 0 && (p.revents & POLLNVAL))
                return -EBADF;
        if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)))
                return -ESRCH;
        return 0;
}

/* Read a whole procfs file through dirfd, at most max bytes, NUL-terminated, no NUL inside. */
static int read_proc_file_at(int dirfd, const char *name, size_t max, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 4096, len = 0;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();

        buf = malloc(size);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t n;

                if (len + 1 >= size) {
                        char *p;

                        if (size >= max)
                                return -EFBIG;
                        size = MIN(size * 2, max);
                        p = realloc(buf, size);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }

                size_t want = size - 1 - len;

                n = read(fd, buf + len, want);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                /*
                 * procfs makes the whole text of a file like status on the first
                 * read and hands out as much as fits: a read shorter than asked
                 * for has returned the rest (no read for the end of file).
                 */
                if ((size_t) n < want)
                        break;
        }

        if (memchr(buf, 0, len))
                return -EBADMSG;
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

typedef struct ProcStatus {
        pid_t pid;
        pid_t tracer_pid;
        char state;
        uint32_t euid;
        uint32_t egid;
        uint32_t *groups;
        size_t n_groups;
} ProcStatus;

static int parse_pid_value(const char *s, pid_t *ret) {
        uint32_t v;
        int r;

        r = parse_uint32(s, &v);
        if (r < 0)
                return r;
        if (v > INT32_MAX)
                return -ERANGE;
        *ret = (pid_t) v;
        return 0;
}

/* "Uid:\treal\teffective\tsaved\tfs": exactly four ids; returns the effective one. */
static int parse_id_quad(char *s, uint32_t *ret) {
        uint32_t ids[4];
        size_t n = 0;
        char *tok;
        int r;

        while ((tok = strsep(&s, "\t"))) {
                if (n >= ELEMENTSOF(ids))
                        return -EBADMSG;
                r = parse_uid(tok, &ids[n++]);
                if (r < 0)
                        return -EBADMSG;
        }
        if (n != ELEMENTSOF(ids))
                return -EBADMSG;
        *ret = ids[1];
        return 0;
}

/* "Groups:\t1 2 3 ": space-separated ids, the kernel leaves a trailing space. */
static int parse_groups(char *s, uint32_t **ret, size_t *ret_n) {
        _cleanup_free_ uint32_t *groups = NULL;
        size_t n = 0, allocated = 0;
        char *tok;
        int r;

        while ((tok = strsep(&s, " "))) {
                if (isempty(tok))
                        continue;
                if (n >= IDENTITY_GROUPS_MAX)
                        return -E2BIG;
                if (n >= allocated) {
                        size_t new_allocated = MAX(allocated * 2, (size_t) 16);
                        uint32_t *p = reallocarray(groups, new_allocated, sizeof *groups);
                        if (!p)
                                return -ENOMEM;
                        groups = p;
                        allocated = new_allocated;
                }
                r = parse_uid(tok, &groups[n++]);
                if (r < 0)
                        return -EBADMSG;
        }

        *ret = TAKE_PTR(groups);
        *ret_n = n;
        return 0;
}

/*
 * Strict parse of /proc/<pid>/status (modified in place): every field we use
 * must appear exactly once, as "Key:\tvalue\n", and parse completely.
 */
static int parse_proc_status(char *s, bool want_creds, ProcStatus *ret) {
        _cleanup_free_ uint32_t *groups = NULL;
        ProcStatus st = {};
        unsigned seen = 0, need;
        size_t n_groups = 0;
        char *line;
        int r;

        enum {
                SEEN_STATE = 1 << 0,
                SEEN_PID = 1 << 1,
                SEEN_TRACER = 1 << 2,
                SEEN_UID = 1 << 3,
                SEEN_GID = 1 << 4,
                SEEN_GROUPS = 1 << 5,
        };

        need = SEEN_STATE | SEEN_PID | SEEN_TRACER;
        if (want_creds)
                need |= SEEN_UID | SEEN_GID | SEEN_GROUPS;

        if (isempty(s) || s[strlen(s) - 1] != '\n')
                return -EBADMSG;

        while ((line = strsep(&s, "\n"))) {
                char *colon, *value;
                unsigned bit;

                if (!s && isempty(line))
                        break;          /* after the final newline */

                colon = strchr(line, ':');
                if (!colon)
                        return -EBADMSG;
                *colon = 0;
                value = colon + 1;

                if (streq(line, "State"))
                        bit = SEEN_STATE;
                else if (streq(line, "Pid"))
                        bit = SEEN_PID;
                else if (streq(line, "TracerPid"))
                        bit = SEEN_TRACER;
                else if (streq(line, "Uid"))
                        bit = SEEN_UID;
                else if (streq(line, "Gid"))
                        bit = SEEN_GID;
                else if (streq(line, "Groups"))
                        bit = SEEN_GROUPS;
                else
                        continue;

                if (seen & bit)
                        return -EBADMSG;        /* a duplicate is never the kernel's */
                seen |= bit;
                if (value[0] != '\t')
                        return -EBADMSG;
                value++;

                switch (bit) {
                case SEEN_STATE:
                        /*
                         * "R (running)": one letter, then a space. The kernel's letters
                         * are upper case except "t (tracing stop)", the state a traced
                         * client is judged in, so both cases are valid.
                         */
                        if (!((value[0] >= 'A' && value[0] <= 'Z') || (value[0] >= 'a' && value[0] <= 'z')) ||
                            (value[1] != ' ' && value[1] != 0))
                                return -EBADMSG;
                        st.state = value[0];
                        break;
                case SEEN_PID:
                        if (parse_pid_value(value, &st.pid) < 0)
                                return -EBADMSG;
                        break;
                case SEEN_TRACER:
                        if (parse_pid_value(value, &st.tracer_pid) < 0)
                                return -EBADMSG;
                        break;
                case SEEN_UID:
                        r = parse_id_quad(value, &st.euid);
                        if (r < 0)
                                return r;
                        break;
                case SEEN_GID:
                        r = parse_id_quad(value, &st.egid);
                        if (r < 0)
                                return r;
                        break;
                case SEEN_GROUPS:
                        if (!want_creds)
                                break;
                        r = parse_groups(value, &groups, &n_groups);
                        if (r < 0)
                                return r;
                        break;
                }
        }

        if ((seen & need) != need)
                return -EBADMSG;

        st.groups = TAKE_PTR(groups);
        st.n_groups = n_groups;
        *ret = st;
        return 0;
}

static int read_exe_link(int dirfd, char **ret_path, bool *ret_deleted) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 256;

        for (;;) {
                ssize_t n;

                buf = malloc(size);
                if (!buf)
                        return -ENOMEM;
                n = readlinkat(dirfd, "exe", buf, size);
                if (n < 0)
                        return negative_errno();
                if ((size_t) n < size) {
                        size_t len = (size_t) n, slen = strlen(DELETED_SUFFIX);

                        if (len == 0 || memchr(buf, 0, len))
                                return -EBADMSG;
                        buf[len] = 0;
                        *ret_deleted = len > slen && memcmp(buf + len - slen, DELETED_SUFFIX, slen) == 0;
                        *ret_path = TAKE_PTR(buf);
                        return 0;
                }
                /* Possibly truncated: retry bigger, bounded. */
                buf = mfree(buf);
                if (size >= EXE_LINK_MAX)
                        return -ENAMETOOLONG;
                size *= 2;
        }
}

/*
 * The user namespace of PID 1 is the reference. Where PID 1 is shielded from
 * us (a sandbox or LSM can deny even root its ns links), fall back to the
 * kernel's fixed inode number for the initial user namespace, as systemd
 * does, on the nsfs device our own namespace links live on. Neither can
 * change while we run, so the answer is looked up once.
 */
static int initial_userns_lookup(struct stat *ret) {
        struct stat st;

        if (stat("/proc/1/ns/user", &st) >= 0) {
                *ret = st;
                return 0;
        }
        if (errno != EACCES && errno != EPERM)
                return negative_errno();

        if (stat("/proc/self/ns/user", &st) < 0)
                return negative_errno();
        st.st_ino = PROC_USER_INIT_INO;
        *ret = st;
        return 0;
}

static int initial_userns_reference(dev_t *ret_dev, ino_t *ret_ino) {
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        static bool cached;
        static dev_t dev;
        static ino_t ino;
        int r = 0;

        pthread_mutex_lock(&lock);
        if (!cached) {
                struct stat st;

                r = initial_userns_lookup(&st);
                if (r >= 0) {
                        dev = st.st_dev;
                        ino = st.st_ino;
                        cached = true;
                }
        }
        if (r >= 0) {
                *ret_dev = dev;
                *ret_ino = ino;
        }
        pthread_mutex_unlock(&lock);
        return r;
}

static int in_initial_userns(int dirfd, bool *ret) {
        struct stat peer;
        dev_t init_dev;
        ino_t init_ino;
        int r;

        if (fstatat(dirfd, "ns/user", &peer, 0) < 0)
                return negative_errno();
        r = initial_userns_reference(&init_dev, &init_ino);
        if (r < 0)
                return r;
        *ret = peer.st_dev == init_dev && peer.st_ino == init_ino;
        return 0;
}

/* Read everything from /proc/<id->pid> into id; id->pidfd is set. */
static int identity_read_proc(ProcessIdentity *id, bool want_creds) {
        _cleanup_close_ int dirfd = -EBADF;
        _cleanup_free_ char *status = NULL;
        _cleanup_free_ uint32_t *groups = NULL;
        char path[sizeof("/proc/") + 3 * sizeof(pid_t) + 1];
        ProcStatus ps;
        int r;

        (void) snprintf(path, sizeof path, "/proc/%d", (int) id->pid);
        dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return errno == ENOENT ? -ESRCH : negative_errno();

        r = read_proc_file_at(dirfd, "status", PROC_STATUS_MAX, &status);
        if (r < 0)
                return r;
        r = parse_proc_status(status, want_creds, &ps);
        if (r < 0)
                return r;
        groups = ps.groups;
        /* Our /proc must be of our pid namespace, else numbers name other processes. */
        if (ps.pid != id->pid)
                return -EIO;
        if (ps.state == 'Z' || ps.state == 'X')
                return -ESRCH;

        /* The magic link itself: works for deleted files and other mount namespaces. */
        r = openat(dirfd, "exe", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (r < 0)
                return negative_errno();    /* ENOENT for kernel threads and exited processes */
        id->exe_fd = r;
        if (fstat(id->exe_fd, &id->exe_stat) < 0)
                return negative_errno();

        r = read_exe_link(dirfd, &id->exe_path, &id->exe_deleted);
        if (r < 0)
                return r;
        /* Unlinked but another hard link kept it alive still reads as deleted. */
        if (id->exe_stat.st_nlink == 0)
                id->exe_deleted = true;

        r = in_initial_userns(dirfd, &id->initial_userns);
        if (r < 0)
                return r;

        id->tracer_pid = ps.tracer_pid;
        if (want_creds) {
                id->uid = ps.euid;
                id->gid = ps.egid;
                id->supplementary_gids = TAKE_PTR(groups);
                id->n_supplementary_gids = ps.n_groups;
        }
        return 0;
}

/* Read /proc, then prove the process is still the same. Any failure of a dead peer is -ESRCH. */
static int identity_gather(ProcessIdentity *id, bool want_creds) {
        int r, k;

        r = identity_read_proc(id, want_creds);
        k = process_identity_verify_alive(id);
        if (k == -ESRCH)
                return -ESRCH;
        if (r < 0)
                return r;
        return k;
}

static int socket_check_connected_unix(int fd) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;

        if (fd < 0)
                return -EBADF;

        /*
         * One call answers all three questions: not a socket (-ENOTSOCK), not
         * connected (ENOTCONN, which includes a listening socket, whose "peer"
         * credentials would be its own), and the address family.
         */
        if (getpeername(fd, (struct sockaddr *) &sa, &len) < 0)
                return errno == ENOTCONN ? -EINVAL : negative_errno();
        if (len < sizeof(sa_family_t) || sa.ss_family != AF_UNIX)
                return -EINVAL;
        return 0;
}

static int socket_peer_groups(int fd, uint32_t **ret, size_t *ret_n) {
        _cleanup_free_ gid_t *gids = NULL;
        socklen_t len = 64 * sizeof(gid_t);
        uint32_t *out;
        size_t n;

        _Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is 32 bit");

        /* On ERANGE the kernel says the size it needs; the peer's credentials are fixed at connect. */
        for (unsigned attempt = 0;; attempt++) {
                socklen_t got = len;

                gids = malloc(MAX((size_t) len, (size_t) 1));
                if (!gids)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &got) >= 0) {
                        len = got;
                        break;
                }
                if (errno != ERANGE || attempt >= 3)
                        return negative_errno();
                if (got > IDENTITY_GROUPS_MAX * sizeof(gid_t))
                        return -E2BIG;
                if (got <= len)
                        return -EBADMSG;        /* ERANGE must ask for more */
                len = got;
                gids = mfree(gids);
        }

        if (len % sizeof(gid_t) != 0)
                return -EBADMSG;
        n = len / sizeof(gid_t);
        out = malloc(MAX(n, (size_t) 1) * sizeof *out);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                out[i] = (uint32_t) gids[i];
        *ret = out;
        *ret_n = n;
        return 0;
}

static int socket_peer_pidfd(int fd, pid_t pid, int *ret) {
        socklen_t len;
        int pidfd, r;

        len = sizeof pidfd;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) >= 0) {
                if (len != sizeof pidfd || pidfd < 0)
                        return -EBADMSG;
                *ret = pidfd;
                return 0;
        }
        /*
         * Kernels 6.5..6.15 refuse a pidfd for a peer that has already been
         * reaped (EINVAL/ESRCH); newer ones hand one out that reports ESRCH.
         */
        if (errno == EINVAL || errno == ESRCH)
                return -ESRCH;
        if (errno != ENOPROTOOPT)
                return negative_errno();

        /* Before Linux 6.5: racy fallback, see the top of this file. */
        r = sys_pidfd_open(pid);
        if (r < 0)
                return r == -EINVAL ? -ESRCH : r;
        *ret = r;
        return 0;
}

int process_identity_from_socket_full(int fd, const struct ucred *peer, bool want_groups, ProcessIdentity **ret) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        struct ucred cred;
        socklen_t len;
        int r;

        if (!ret)
                return -EINVAL;

        if (peer) {
                if (fd < 0)
                        return -EBADF;
                cred = *peer;
        } else {
                r = socket_check_connected_unix(fd);
                if (r < 0)
                        return r;

                len = sizeof cred;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                        return negative_errno();
                if (len != sizeof cred)
                        return -EBADMSG;
        }
        /* pid 0: the peer lives in a pid namespace we cannot see into. */
        if (cred.pid <= 0)
                return -ESRCH;
        if (cred.uid == (uid_t) -1 || cred.gid == (gid_t) -1)
                return -EBADMSG;

        r = process_identity_new(cred.pid, &id);
        if (r < 0)
                return r;
        id->uid = cred.uid;
        id->gid = cred.gid;

        if (want_groups) {
                r = socket_peer_groups(fd, &id->supplementary_gids, &id->n_supplementary_gids);
                if (r < 0)
                        return r;
        }

        r = socket_peer_pidfd(fd, cred.pid, &id->pidfd);
        if (r < 0)
                return r;

        r = identity_gather(id, /* want_creds= */ false);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(id);
        return 0;
}

int process_identity_from_socket(int fd, ProcessIdentity **ret) {
        return process_identity_from_socket_full(fd, NULL, true, ret);
}

int process_identity_from_pid(pid_t pid, ProcessIdentity **ret) {
        _cleanup_(process_identity_freep) ProcessIdentity *id = NULL;
        int r;

        if (!ret || pid <= 0)
                return -EINVAL;

        r = process_identity_new(pid, &id);
        if (r < 0)
                return r;

        r = sys_pidfd_open(pid);
        if (r < 0)
                return r == -EINVAL ? -ESRCH : r;       /* EINVAL: not a process (e.g. a thread id) */
        id->pidfd = r;

        /* No socket: the effective ids and groups come from the same status read. */
        r = identity_gather(id, /* want_creds= */ true);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(id);
        return 0;
}
