/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* secctl: the administration CLI of secd. Everything but main() is in secctl-internal. */
#include "log.h"
#include "secctl.h"

int main(int argc, char **argv) {
        /* An administrator reads errors on the terminal, also when run from a unit. */
        log_setup("secctl", LOG_TARGET_STDERR);
        return ctl_run(argc, argv);
}
