/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Talking to secd through libsecclient's control client, turning what goes
 * wrong into messages that say what to do and into secctl's exit statuses,
 * and the JSON helpers every verb uses.
 */
#include <inttypes.h>

#include "log.h"
#include "secclient.h"
#include "secctl.h"

static void hint_unreachable(const CtlContext *ctx) {
        log_error("Is secd running? Check 'systemctl status secd.socket', or point secctl at the right "
                  "socket with --socket PATH or $%s (now %s).", CTL_SOCKET_ENV, ctl_socket_path(ctx));
}

static void hint_permission(void) {
        log_error("Run secctl as root or as a member of the '%s' group.", CTL_ADMIN_GROUP);
}

int ctl_transport_error(const CtlContext *ctx, int error, const char *method) {
        const char *path = ctl_socket_path(ctx);

        switch (error) {
        case -ENOENT:
        case -ECONNREFUSED:
        case -ENOTDIR:
        case -ENOTSOCK:
        case -ECONNRESET:
        case -EPIPE:
        case -ECONNABORTED:
                log_error("Cannot reach secd at %s: %s.", path, strerror(-error));
                hint_unreachable(ctx);
                return CTL_EXIT_UNREACHABLE;
        case -ETIMEDOUT:
                log_error("secd at %s did not answer %s in time.", path, method ?: "the connection");
                hint_unreachable(ctx);
                return CTL_EXIT_UNREACHABLE;
        case -EACCES:
        case -EPERM:
                log_error("Permission denied on %s.", path);
                hint_permission();
                return CTL_EXIT_PERMISSION;
        case -ENAMETOOLONG:
                log_error("The socket path %s is too long for a Unix socket (at most 107 bytes).", path);
                return CTL_EXIT_USAGE;
        case -EBADMSG:
        case -EMSGSIZE:
                return ctl_bad_reply(method);
        default:
                log_error("%s failed: %s.", method ?: "Connecting to secd", secclient_strerror(error));
                return CTL_EXIT_FAILURE;
        }
}

int ctl_bad_reply(const char *method) {
        log_error("secd sent a malformed reply to %s; are secctl and secd the same version?",
                  method ?: "secctl");
        return CTL_EXIT_FAILURE;
}

/* "path" -> "--path", "rules[2].sha256" stays as it is. */
static void field_to_option(const char *field, char *buf, size_t n) {
        for (size_t i = 0; i < ctl_options_count; i++)
                if (streq_ptr(field, ctl_options[i].name)) {
                        (void) snprintf(buf, n, " (--%s)", field);
                        return;
                }
        buf[0] = '\0';
}

static const char *error_suffix(const char *name) {
        const char *dot = strrchr(name, '.');
        return dot ? dot + 1 : name;
}

int ctl_varlink_error(const CtlContext *ctx, const char *error, const char *params_text) {
        _cleanup_json_ json_object *p = NULL;
        const char *name = error ?: "(unnamed error)", *suffix = error_suffix(name);
        const char *field = NULL, *s = NULL;
        char opt[64];
        int64_t id;

        if (params_text)
                p = json_tokener_parse(params_text);
        if (p && !json_object_is_type(p, json_type_object))
                p = (json_object_put(p), NULL);

        if (strncmp(name, "io.secd.", 8) == 0 && streq(suffix, "PermissionDenied")) {
                log_error("secd denied the request: permission denied.");
                hint_permission();
                return CTL_EXIT_PERMISSION;
        }
        if (streq(name, "io.secd.Policy.NoSuchRule")) {
                if (ctl_json_get_int(p, "id", &id) >= 0)
                        log_error("No rule with id %" PRId64 ". See 'secctl policy list'.", id);
                else
                        log_error("No such rule. See 'secctl policy list'.");
                return CTL_EXIT_FAILURE;
        }
        if (streq(name, "io.secd.Policy.InvalidRule")) {
                const char *reason = NULL;

                (void) ctl_json_get_string(p, "field", &field);
                (void) ctl_json_get_string(p, "reason", &reason);
                field_to_option(field, opt, sizeof opt);
                log_error("secd refused the field '%s'%s: %s.", field ?: "(unknown)", opt, reason ?: "invalid");
                return CTL_EXIT_USAGE;
        }
        if (streq(name, "io.secd.Policy.UnknownName")) {
                (void) ctl_json_get_string(p, "field", &field);
                (void) ctl_json_get_string(p, "name", &s);
                field_to_option(field, opt, sizeof opt);
                if (streq_ptr(field, "uid") || streq_ptr(field, "gid"))
                        /* Policy.Test takes the groups of a uid from its passwd entry. */
                        log_error("No %s with %s %s%s on this system, so secd cannot tell the client's groups; "
                                  "give the client's group with --gid GID.",
                                  streq(field, "uid") ? "user" : "group", field, s ?: "", opt);
                else if (streq_ptr(field, "user") || streq_ptr(field, "group"))
                        log_error("Unknown %s name '%s'%s: no such %s on this system.", field, s ?: "", opt,
                                  field);
                else
                        log_error("Unknown name '%s' in '%s': no such user or group on this system.", s ?: "",
                                  field ?: "(unknown field)");
                return CTL_EXIT_USAGE;
        }
        if (streq(name, "org.varlink.service.InvalidParameter")) {
                (void) ctl_json_get_string(p, "parameter", &field);
                field_to_option(field, opt, sizeof opt);
                log_error("secd rejected the parameter '%s'%s.", field ?: "(unknown)", opt);
                return CTL_EXIT_USAGE;
        }
        if (streq(name, "io.secd.Policy.CannotHash")) {
                const char *reason = NULL;

                (void) ctl_json_get_string(p, "path", &s);
                (void) ctl_json_get_string(p, "reason", &reason);
                log_error("secd cannot hash %s: %s. Use --binary to hash it here, or --sha256.",
                          s ?: "the file", reason ?: "unknown reason");
                return CTL_EXIT_FAILURE;
        }
        if (streq(name, "io.secd.Service.InvalidConfiguration")) {
                (void) ctl_json_get_string(p, "reason", &s);
                log_error("secd rejected the new configuration and keeps the running one: %s",
                          s ?: "(no reason given)");
                return CTL_EXIT_FAILURE;
        }
        if (streq(name, "org.varlink.service.MethodNotFound") ||
            streq(name, "org.varlink.service.MethodNotImplemented") ||
            streq(name, "org.varlink.service.InterfaceNotFound")) {
                log_error("secd does not implement this call (%s); are secctl and secd the same version?",
                          name);
                return CTL_EXIT_FAILURE;
        }

        log_error("secd answered with the error %s%s%s.", name, params_text ? " " : "", params_text ?: "");
        return CTL_EXIT_FAILURE;
}

int ctl_connect(const CtlContext *ctx, secclient_control **ret) {
        int r;

        r = secclient_control_open(ctl_socket_path(ctx), ret);
        if (r < 0)
                return ctl_transport_error(ctx, r, NULL);
        return 0;
}

int ctl_call(const CtlContext *ctx, secclient_control *c, const char *method, json_object *params,
             json_object **ret_reply) {
        _cleanup_free_ char *reply = NULL, *error = NULL;
        _cleanup_json_ json_object *o = NULL;
        const char *text = NULL;
        int r;

        if (params) {
                text = json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN);
                if (!text)
                        return log_oom(), CTL_EXIT_FAILURE;
        }

        r = secclient_control_call(c, method, text, &reply, &error);
        if (r == -EREMOTEIO)
                return ctl_varlink_error(ctx, error, reply);
        if (r < 0)
                return ctl_transport_error(ctx, r, method);

        o = json_tokener_parse(reply ?: "{}");
        if (!o || !json_object_is_type(o, json_type_object))
                return ctl_bad_reply(method);
        if (ret_reply)
                *ret_reply = TAKE_PTR(o);
        return 0;
}

int ctl_call_once(const CtlContext *ctx, const char *method, json_object *params,
                  json_object **ret_reply) {
        _cleanup_control_ secclient_control *c = NULL;
        int r;

        r = ctl_connect(ctx, &c);
        if (r != 0)
                return r;
        return ctl_call(ctx, c, method, params, ret_reply);
}

void ctl_json_print(FILE *f, json_object *o) {
        fprintf(f, "%s\n",
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
}

void ctl_json_print_line(FILE *f, json_object *o) {
        fprintf(f, "%s\n",
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        (void) fflush(f);
}

int ctl_json_get_int(json_object *o, const char *key, int64_t *ret) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        *ret = json_object_get_int64(v);
        return 0;
}

int ctl_json_get_string(json_object *o, const char *key, const char **ret) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        *ret = json_object_get_string(v);
        return 0;
}

int ctl_json_get_bool(json_object *o, const char *key, bool *ret) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
                return -EBADMSG;
        *ret = json_object_get_boolean(v);
        return 0;
}

int ctl_json_get_int_opt(json_object *o, const char *key, bool *ret_present, int64_t *ret) {
        json_object *v;

        *ret_present = false;
        if (!o || !json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return -EBADMSG;
        *ret = json_object_get_int64(v);
        *ret_present = true;
        return 0;
}

int ctl_json_get_string_opt(json_object *o, const char *key, const char **ret) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return -EBADMSG;
        *ret = json_object_get_string(v);
        return 0;
}
