/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* secctl reload (io.secd.Service.Reload) and secctl version. */
#include <inttypes.h>

#include "log.h"
#include "secctl.h"

int ctl_verb_reload(CtlContext *ctx) {
        _cleanup_json_ json_object *reply = NULL;
        json_object *restart;
        int64_t generation;
        int r;

        r = ctl_call_once(ctx, "io.secd.Service.Reload", NULL, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (ctl_json_get_int(reply, "generation", &generation) < 0 ||
            !json_object_object_get_ex(reply, "restart_needed", &restart) ||
            !json_object_is_type(restart, json_type_array))
                return ctl_bad_reply("io.secd.Service.Reload");

        fprintf(ctx->out, "Reloaded, policy generation %" PRId64 ".\n", generation);
        for (size_t i = 0; i < json_object_array_length(restart); i++) {
                json_object *s = json_object_array_get_idx(restart, i);

                if (json_object_is_type(s, json_type_string))
                        log_warning("Setting '%s' changed but needs a restart of secd to take effect "
                                    "(systemctl restart secd).", json_object_get_string(s));
        }
        return 0;
}

int ctl_verb_version(CtlContext *ctx) {
        _cleanup_json_ json_object *o = NULL;

        if (!ctx->json) {
                fprintf(ctx->out, "secctl %s\nlibsecclient %s\n", SECD_VERSION, secclient_version());
                return 0;
        }
        o = json_object_new_object();
        if (!o ||
            json_object_object_add(o, "secctl", json_object_new_string(SECD_VERSION)) < 0 ||
            json_object_object_add(o, "libsecclient", json_object_new_string(secclient_version())) < 0)
                return log_oom(), CTL_EXIT_FAILURE;
        ctl_json_print(ctx->out, o);
        return 0;
}
