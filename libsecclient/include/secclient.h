/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef SECCLIENT_H
#define SECCLIENT_H

/*
 * libsecclient: the C library for talking to secd.
 *
 * Conventions: every handle is opaque; every function returns 0 (or a
 * positive value where documented) on success and a negative errno on
 * failure; every _free() accepts NULL and returns NULL; strings handed back
 * are malloc'd and owned by the caller (free()).
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SECCLIENT_CONTROL_SOCKET_DEFAULT "/run/secd/control.sock"

/* Maximum size of one Varlink message this library sends or accepts. */
#define SECCLIENT_CONTROL_MESSAGE_MAX (64u * 1024u * 1024u)

/* Human-readable text for a negative errno returned by this library. */
const char *secclient_strerror(int error);

/* The library's version string, e.g. "0.1.0". */
const char *secclient_version(void);

/*
 * Control client: a Varlink connection to secd's control socket (or any
 * Varlink service). One call in flight at a time; not thread-safe.
 */
typedef struct secclient_control secclient_control;

/*
 * Connect to the Varlink socket at path (NULL: the default above).
 * Errors: -ENOENT (no socket at path), -ECONNREFUSED (nobody listening),
 * -EACCES (no permission on the socket), -ENAMETOOLONG, other -errno.
 */
int secclient_control_open(const char *path, secclient_control **ret);

/* Close and free; NULL-safe; returns NULL. */
secclient_control *secclient_control_free(secclient_control *c);

/* Set the timeout for each reply in milliseconds (default 30000; 0 = none). */
int secclient_control_set_timeout(secclient_control *c, unsigned timeout_ms);

/*
 * Call method with parameters, a JSON object as text (NULL means {}).
 * On success returns 0 and *ret_reply is the reply's "parameters" object as
 * JSON text. If the service answers with a Varlink error, returns
 * -EREMOTEIO, *ret_error is the error name (for example
 * "io.secd.Policy.NoSuchRule") and *ret_reply its parameters as JSON text.
 * Other errors: -EINVAL (parameters not a JSON object, method malformed),
 * -ETIMEDOUT, -ECONNRESET (service hung up), -EBADMSG (malformed reply),
 * -EMSGSIZE (reply over SECCLIENT_CONTROL_MESSAGE_MAX).
 * ret_reply and ret_error may be NULL when the caller does not want them.
 */
int secclient_control_call(secclient_control *c, const char *method, const char *parameters,
                           char **ret_reply, char **ret_error);

/*
 * Start a call with "more": the service may answer with several replies.
 * Read them with secclient_control_next() until *ret_continues is 0.
 */
int secclient_control_call_more(secclient_control *c, const char *method, const char *parameters);

/*
 * Next reply of a call_more() stream. Returns as secclient_control_call()
 * does; *ret_continues is 1 while more replies will follow. timeout_ms
 * overrides the handle's timeout for this read (-1: use the handle's).
 */
int secclient_control_next(secclient_control *c, int timeout_ms, char **ret_reply,
                           char **ret_error, int *ret_continues);

/* The connection's file descriptor, for poll() in streaming callers. */
int secclient_control_fd(const secclient_control *c);

#ifdef __cplusplus
}
#endif

#endif
