/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Process identity of the peer of a connected Unix socket: the kernel's
 * connect-time credentials (SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD or a
 * pidfd_open() fallback), the executable behind /proc/<pid>/exe opened and
 * fstat()ed, TracerPid, and whether the peer lives in the initial user
 * namespace. Gathering only: this module never decides. After /proc has been
 * read, the pidfd proves that the process is still the same one; any doubt
 * is an error, which callers turn into a denial.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "macro.h"

#define IDENTITY_GROUPS_MAX 65536

typedef struct ProcessIdentity {
        pid_t pid;
        uint32_t uid;
        uint32_t gid;
        uint32_t *supplementary_gids;   /* from SO_PEERGROUPS */
        size_t n_supplementary_gids;
        int pidfd;                      /* owned */
        int exe_fd;                     /* owned: O_RDONLY|O_CLOEXEC of /proc/<pid>/exe */
        struct stat exe_stat;           /* fstat(exe_fd) */
        char *exe_path;                 /* readlink of /proc/<pid>/exe, " (deleted)" suffix kept */
        bool exe_deleted;               /* the link target has been unlinked */
        pid_t tracer_pid;               /* TracerPid from /proc/<pid>/status, 0 if not traced */
        bool initial_userns;            /* same user namespace as PID 1 */
} ProcessIdentity;

/*
 * Gather the identity of the peer of the connected AF_UNIX socket fd.
 * Returns 0 and a new identity, or:
 *   -ESRCH   the peer exited (before or while it was inspected),
 *   -EACCES/-EPERM  /proc could not be read (missing privileges),
 *   -ENOTSOCK/-EINVAL  fd is not a connected Unix socket,
 *   other negative errno on failure.
 */
int process_identity_from_socket(int fd, ProcessIdentity **ret);

/*
 * The same, for a caller that knows more. peer: SO_PEERCRED as the caller
 * already read it from this very socket, which it knows to be a connected
 * AF_UNIX socket (accept() on a Unix listener); the credentials are fixed at
 * connect(), so they are not read again. NULL: read and check as above.
 * want_groups false: supplementary_gids stays empty (NULL, 0): only for a
 * policy without gid selectors (policy_snapshot_uses_gids()).
 */
int process_identity_from_socket_full(int fd, const struct ucred *peer, bool want_groups, ProcessIdentity **ret);

/* Same, from an explicit pid (used by tests and by Policy.Test for a live pid). */
int process_identity_from_pid(pid_t pid, ProcessIdentity **ret);

/*
 * Prove the process behind the identity is still alive and the same one
 * (pidfd-based). 0 if so, -ESRCH if it exited (its pid may be recycled);
 * a zombie counts as exited.
 */
int process_identity_verify_alive(const ProcessIdentity *id);

ProcessIdentity *process_identity_free(ProcessIdentity *id);
DEFINE_TRIVIAL_CLEANUP_FUNC(ProcessIdentity *, process_identity_free);
