/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "secclient-internal.h"

_public_ const char *secclient_version(void) {
        return SECD_VERSION;
}

_public_ const char *secclient_strerror(int error) {
        switch (error < 0 ? -error : error) {
        case 0:
                return "Success";
        case EREMOTEIO:
                return "The service answered with an error";
        case ECONNRESET:
                return "The service closed the connection";
        case ECONNREFUSED:
                return "Nobody is listening on the socket (is secd running?)";
        case ENOENT:
                return "No such socket (is secd running?)";
        case EACCES:
                return "Permission denied (by secd, or on the socket)";
        case EAGAIN:
                return "Rate limited by secd; try again later";
        case EPROTO:
                return "Protocol error (malformed request or answer)";
        case ENOKEY:
                return "No client credentials (enroll or load a certificate first)";
        case EKEYEXPIRED:
                return "The client certificate has expired";
        case EKEYREVOKED:
                return "The client certificate was revoked";
        case EKEYREJECTED:
                return "Certificate or key rejected (secd's certificate did not verify, or a key mismatch)";
        case ESHUTDOWN:
                return "secd is shutting down";
        case ETIMEDOUT:
                return "Timed out waiting for the service";
        case EBADMSG:
                return "Malformed message from the service";
        case EMSGSIZE:
                return "Message too large";
        case ENAMETOOLONG:
                return "Socket path too long";
        case EINVAL:
                return "Invalid argument";
        case EBUSY:
                return "Busy: a call is in progress, secd has too many requests in flight, or another connection consumes the mailbox";
        case ENOTCONN:
                return "Not connected, or the mailbox is not registered on this connection";
        default:
                /* strerror() is not thread-safe in theory; strerrordesc_np() is. */
                return strerrordesc_np(error < 0 ? -error : error) ?: "Unknown error";
        }
}
