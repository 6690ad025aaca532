/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Listening endpoints. Taken by name from the service manager
 * (sd_listen_fds_with_names(): "data", "tcp", "enroll", "control"), or
 * bound by secd under the runtime directory when not passed:
 *   data     secd.sock     0666
 *   enroll   enroll.sock   0666
 *   control  control.sock  0660 group admin_group (--dev: 0600, invoking user)
 *   tcp      tcp_listen    only when configured
 * A socket file left behind is replaced only when nobody listens on it.
 */

#include "manager.h"

#define ENDPOINT_DATA_SOCKET "secd.sock"
#define ENDPOINT_ENROLL_SOCKET "enroll.sock"
#define ENDPOINT_CONTROL_SOCKET "control.sock"

struct Endpoint {
        Manager *manager;
        PolicyEndpoint kind;
        int fd;
        char *path;                     /* socket file bound by secd (unlinked at exit), or NULL */
        char *address;                  /* socket path (bound or passed), for messages; NULL if unknown */
        bool activated;                 /* passed by the service manager */
        sd_event_source *source;
        sd_event_source *backoff_source;
};

/* Adopt passed sockets, bind the others, and attach them all to the loop. */
int endpoint_setup_all(Manager *m);

/* Stop accepting on every endpoint (SIGTERM). */
void endpoint_disable_all(Manager *m);

Endpoint *endpoint_free(Endpoint *e);

/* "<runtime_dir>/<name>" */
int endpoint_socket_path(const Manager *m, PolicyEndpoint kind, char **ret);
