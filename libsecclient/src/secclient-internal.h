/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Internal to libsecclient: not installed, not exported from the shared
 * library (hidden visibility, absent from secclient.sym). secctl and the
 * unit tests reach these through the static secclient-internal library.
 */

#include "macro.h"
#include "secclient.h"

/* Marks a function exported from libsecclient.so (also listed in secclient.sym). */
#define _public_ __attribute__((visibility("default")))

DEFINE_TRIVIAL_CLEANUP_FUNC(secclient_control *, secclient_control_free);

/*
 * Wrap an already connected stream socket (a socketpair end, an inherited
 * fd). Takes ownership of fd on success only. -EBADF, -ENOMEM.
 */
int control_adopt_fd(int fd, secclient_control **ret);

/*
 * Change the largest reply accepted (terminating NUL included; default
 * SECCLIENT_CONTROL_MESSAGE_MAX). Only between calls: -EBUSY while a
 * stream is open or a reply is partly received.
 */
int control_set_message_max(secclient_control *c, size_t message_max);
