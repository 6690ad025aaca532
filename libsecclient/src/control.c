/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "secclient-internal.h"

/* Placeholder until the control client lands. */
_public_ int secclient_control_open(const char *path, secclient_control **ret) {
        return -EOPNOTSUPP;
}
_public_ secclient_control *secclient_control_free(secclient_control *c) {
        return NULL;
}
_public_ int secclient_control_set_timeout(secclient_control *c, unsigned timeout_ms) {
        return -EOPNOTSUPP;
}
_public_ int secclient_control_call(secclient_control *c, const char *method, const char *parameters,
                                    char **ret_reply, char **ret_error) {
        return -EOPNOTSUPP;
}
_public_ int secclient_control_call_more(secclient_control *c, const char *method, const char *parameters) {
        return -EOPNOTSUPP;
}
_public_ int secclient_control_next(secclient_control *c, int timeout_ms, char **ret_reply,
                                    char **ret_error, int *ret_continues) {
        return -EOPNOTSUPP;
}
_public_ int secclient_control_fd(const secclient_control *c) {
        return -EBADF;
}
