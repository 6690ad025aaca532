/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Varlink wire codec (https://varlink.org/Method-Call): NUL-terminated
 * JSON objects. Pure: no sockets, no I/O, no logging. The daemon's server,
 * libsecclient's control client, the unit tests and the fuzzer all drive
 * exactly this code.
 *
 *   VarlinkBuffer      accumulates received bytes, yields whole messages,
 *                      refuses a message over the size limit before growing
 *   varlink_call_*     parse/format a method call   (server side reads these)
 *   varlink_reply_*    parse/format a reply          (client side reads these)
 *   varlink_error_*    format an error reply
 *   varlink_params_*   typed extraction of a call's parameters, naming the
 *                      offending parameter for org.varlink.service.InvalidParameter
 *
 * Every function returns 0 (or a documented positive value) on success and a
 * negative errno on failure; ret_* outputs are written only on success.
 * Malformed input of any kind is -EBADMSG: the caller answers nothing and
 * closes the connection (the Varlink way of saying "protocol error").
 */

#include <json-c/json.h>

#include "macro.h"

/* Default maximum size of one message, terminating NUL included (daemon side). */
#define VARLINK_MESSAGE_MAX_DEFAULT (64u * 1024u)

/* Maximum JSON nesting depth accepted in a message. */
#define VARLINK_JSON_DEPTH_MAX 64

/* Longest interface, method or error name accepted (the spec's limit is 255). */
#define VARLINK_NAME_MAX 255

/* The service interface every Varlink service implements. */
#define VARLINK_SERVICE_INTERFACE "org.varlink.service"
#define VARLINK_METHOD_GET_INFO "org.varlink.service.GetInfo"
#define VARLINK_METHOD_GET_INTERFACE_DESCRIPTION "org.varlink.service.GetInterfaceDescription"

/* Standard errors. InvalidParameter carries {"parameter": name}. */
#define VARLINK_ERROR_INTERFACE_NOT_FOUND "org.varlink.service.InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"
#define VARLINK_ERROR_METHOD_NOT_IMPLEMENTED "org.varlink.service.MethodNotImplemented"
#define VARLINK_ERROR_INVALID_PARAMETER "org.varlink.service.InvalidParameter"
#define VARLINK_ERROR_PERMISSION_DENIED "org.varlink.service.PermissionDenied"
#define VARLINK_ERROR_EXPECTED_MORE "org.varlink.service.ExpectedMore"

/* ---- Names --------------------------------------------------------------- */

/*
 * Interface name: reverse-domain, at least two dot-separated labels, each
 * [A-Za-z0-9] with inner '-', the first starting with a letter
 * ("io.secd.Policy", "org.varlink.service").
 */
bool varlink_interface_name_is_valid(const char *s);

/* Member (method, error, type) name: [A-Z][A-Za-z0-9]* ("Add", "NoSuchRule"). */
bool varlink_member_name_is_valid(const char *s);

/* "interface.Member": a valid interface name, a dot, a valid member name. */
bool varlink_qualified_name_is_valid(const char *s);

/* ---- Input buffer -------------------------------------------------------- */

typedef struct VarlinkBuffer VarlinkBuffer;

/*
 * A new, empty input buffer. message_max is the largest message accepted,
 * terminating NUL included (0: VARLINK_MESSAGE_MAX_DEFAULT; at least 2).
 * -ENOMEM, -EINVAL.
 */
int varlink_buffer_new(size_t message_max, VarlinkBuffer **ret);

/* Free; NULL-safe; returns NULL. */
VarlinkBuffer *varlink_buffer_free(VarlinkBuffer *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkBuffer *, varlink_buffer_free);

/*
 * Append size received bytes. Sizes are checked before the buffer grows: if
 * any message in data, or the unterminated message at its end, would exceed
 * message_max, nothing is appended and -EMSGSIZE is returned (the caller
 * closes the connection; the buffer must not be fed again). -ENOMEM.
 */
int varlink_buffer_feed(VarlinkBuffer *b, const void *data, size_t size);

/*
 * Take the next complete message. Returns 1 and sets *ret_message to the
 * NUL-terminated message (not including its NUL, size in *ret_size, which
 * may be NULL) when one is available; 0 when more bytes are needed. The
 * pointer stays valid until the next call to feed/next/free on b.
 */
int varlink_buffer_next(VarlinkBuffer *b, const char **ret_message, size_t *ret_size);

/* Bytes of an unterminated message held (nonzero at EOF: the peer truncated it). */
size_t varlink_buffer_partial(const VarlinkBuffer *b);

/* True when complete messages are waiting to be taken with _next(). */
bool varlink_buffer_has_message(const VarlinkBuffer *b);

/* ---- Parsing ------------------------------------------------------------- */

/*
 * Parse size bytes of JSON text (without the NUL terminator). Common rules
 * for calls and replies: valid UTF-8, no NUL (raw or as \u0000), one JSON
 * object and nothing after it but whitespace, nesting at most
 * VARLINK_JSON_DEPTH_MAX, no unknown top-level keys, every key of the right
 * type. Anything else: -EBADMSG. -ENOMEM.
 */

typedef struct VarlinkCall {
        char *method;             /* "io.secd.Policy.Add" */
        char *interface;          /* "io.secd.Policy" */
        const char *member;       /* "Add", points into method */
        json_object *parameters;  /* owned reference; always an object ({} if absent) */
        bool oneway;
        bool more;
        bool upgrade;
} VarlinkCall;

/* A call: "method" required, "parameters" absent/null/object, flags booleans. */
int varlink_call_parse(const char *message, size_t size, VarlinkCall *ret);

/* Release what a parsed call owns and zero it; safe on a zeroed struct. */
void varlink_call_done(VarlinkCall *c);

typedef struct VarlinkReply {
        json_object *parameters;  /* owned reference; always an object ({} if absent) */
        char *error;              /* qualified error name, NULL for a normal reply */
        bool continues;
} VarlinkReply;

/* A reply: "parameters" absent/null/object, "continues" boolean, "error" a qualified name. */
int varlink_reply_parse(const char *message, size_t size, VarlinkReply *ret);

/* Release what a parsed reply owns and zero it; safe on a zeroed struct. */
void varlink_reply_done(VarlinkReply *r);

/* ---- Formatting ---------------------------------------------------------- */

/*
 * Each returns a malloc'd message ending in its NUL terminator in *ret and
 * its size, NUL included, in *ret_size (may be NULL): ready for write().
 * parameters may be NULL (sent as {}), otherwise it must be a JSON object
 * and is not consumed. -EINVAL for a bad name or non-object parameters,
 * -ENOMEM.
 */

typedef enum VarlinkCallFlags {
        VARLINK_CALL_ONEWAY = 1 << 0,
        VARLINK_CALL_MORE = 1 << 1,
        VARLINK_CALL_UPGRADE = 1 << 2,
} VarlinkCallFlags;

int varlink_call_format(const char *method, json_object *parameters, VarlinkCallFlags flags,
                        char **ret, size_t *ret_size);

/* A reply; "continues": true is added when continues is set. */
int varlink_reply_format(json_object *parameters, bool continues, char **ret, size_t *ret_size);

/* An error reply: {"error": error, "parameters": {...}}. */
int varlink_error_format(const char *error, json_object *parameters, char **ret, size_t *ret_size);

/* org.varlink.service.InvalidParameter {"parameter": parameter}. */
int varlink_error_invalid_parameter_format(const char *parameter, char **ret, size_t *ret_size);

/* ---- Parameter extraction (servers) -------------------------------------- */

typedef enum VarlinkFieldType {
        VARLINK_FIELD_STRING,  /* const char **: borrowed from the parameters object, no NUL inside */
        VARLINK_FIELD_INT,     /* int64_t *: JSON integer in [INT64_MIN + 1, INT64_MAX]; doubles refused */
        VARLINK_FIELD_UINT32,  /* uint32_t *: JSON integer 0..UINT32_MAX (uids, gids, ids) */
        VARLINK_FIELD_BOOL,    /* bool * */
        VARLINK_FIELD_FLOAT,   /* double *: JSON number (integers accepted) */
        VARLINK_FIELD_OBJECT,  /* json_object **: borrowed, an object */
        VARLINK_FIELD_ARRAY,   /* json_object **: borrowed, an array */
        VARLINK_FIELD_ANY,     /* json_object **: borrowed, any non-null value */
} VarlinkFieldType;

typedef enum VarlinkFieldFlags {
        VARLINK_FIELD_REQUIRED = 1 << 0,  /* absent or null: invalid */
} VarlinkFieldFlags;

typedef struct VarlinkField {
        const char *name;
        VarlinkFieldType type;
        VarlinkFieldFlags flags;
        void *ret;  /* typed as above; NULL: accept the field and ignore it */
} VarlinkField;

/*
 * Check parameters (a JSON object) against fields, a table ending with an
 * entry whose name is NULL. Unknown keys, wrong types, out-of-range
 * integers, strings with NUL, and missing required fields are refused:
 * -EINVAL, and *reterr_parameter (if not NULL) names the offending
 * parameter (a pointer into the object or the table), for
 * org.varlink.service.InvalidParameter. Optional fields that are absent or
 * null leave their output untouched. Outputs are written only when every
 * field checked out; borrowed pointers live as long as parameters does.
 */
int varlink_params_extract(json_object *parameters, const VarlinkField fields[],
                           const char **reterr_parameter);
