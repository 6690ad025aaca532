/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The CA's life in the daemon: opened (created on first start) before
 * READY=1, the server certificate and CRL checked for renewal by a timer,
 * and re-read on reload. Sessions hold their own TlsCredentials reference,
 * so swapping the CA or its credentials never drops them.
 */
#include "ca.h"
#include "log.h"
#include "manager.h"

/* How often the server certificate and the CRL are checked for renewal. */
#define MANAGER_CA_CHECK_USEC (UINT64_C(15) * 60 * 1000000)

static void manager_ca_settings(const Manager *m, CaSettings *ret) {
        *ret = (CaSettings) {
                .client_lifetime_usec = m->config.client_cert_lifetime,
                .server_lifetime_usec = m->config.server_cert_lifetime,
        };
}

static int manager_ca_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->ca) {
                r = ca_maybe_renew_server(m->ca);
                if (r < 0)
                        log_error_errno(r, "CA: cannot renew the server certificate or the CRL: %m");
                else if (r > 0)
                        log_info("CA: renewed the server certificate and/or the CRL; new sessions use them.");
        }
        r = sd_event_source_set_time(s, usec + MANAGER_CA_CHECK_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "CA: cannot re-arm the renewal timer: %m");
        return 0;
}

int manager_ca_open(Manager *m) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
        CaSettings settings;
        int r;

        manager_ca_settings(m, &settings);
        r = ca_open(m->config.state_dir, m->db, &settings, &m->ca);
        if (r < 0)
                return log_error_errno(r, "Cannot open the certificate authority in %s: %m", m->config.state_dir);

        /* Owned by the loop (floating): it lives exactly as long as the loop. */
        r = sd_event_add_time_relative(m->event, &timer, CLOCK_MONOTONIC, MANAGER_CA_CHECK_USEC, 0,
                                       manager_ca_on_timer, m);
        if (r >= 0)
                r = sd_event_source_set_floating(timer, true);
        if (r < 0)
                return log_error_errno(r, "Cannot arm the CA renewal timer: %m");
        return 0;
}

int manager_ca_reload(Manager *m) {
        CaSettings settings;
        SecdCA *ca = NULL;
        int r;

        manager_ca_settings(m, &settings);
        r = ca_open(m->config.state_dir, m->db, &settings, &ca);
        if (r < 0)
                return log_error_errno(r, "Cannot re-read the certificate authority; keeping the running one: %m");
        ca_free(m->ca);
        m->ca = ca;
        log_info("CA: re-read %s/ca.key and ca.crt; new server certificate and credentials.", m->config.state_dir);
        return 0;
}
