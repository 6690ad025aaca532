/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secd: main() -> run(). Parses the command line, builds the configuration,
 * opens the store, loads the policy, attaches the endpoints, says READY=1,
 * and runs one sd_event loop until SIGTERM/SIGINT. Never forks.
 *
 * Readiness, for the service manager and for tests: READY=1 goes to
 * $NOTIFY_SOCKET only after the store is open, the policy snapshot is
 * loaded and every endpoint is listening; from that moment a connect() to
 * <runtime_dir>/control.sock is served. Without $NOTIFY_SOCKET, wait for
 * the control socket to accept a connection (the socket file appears
 * before listen(), so its mere existence is not enough).
 */
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "ca.h"
#include "control.h"
#include "data.h"
#include "endpoint.h"
#include "hash-pool.h"
#include "log.h"
#include "manager.h"
#include "secd-messages.h"
#include "tls.h"

#define EXIT_USAGE 2
#define NSS_BUFFER_MAX (UINT64_C(1) << 20)

enum {
        ARG_VERSION = 0x100,
        ARG_CONFIG,
        ARG_DEV,
        ARG_KEY_FIRST = 0x200, /* + index into the config key table */
};

static void help(void) {
        printf("Usage: secd [OPTION...]\n"
               "\n"
               "The secd security daemon: admits local programs by policy and serves the\n"
               "io.secd.* Varlink control API. Runs in the foreground; see secd(8).\n"
               "\n"
               "  -h --help                    Show this help\n"
               "     --version                 Show the version\n"
               "     --config=FILE             Configuration file (default " SECD_CONFIG_FILE_DEFAULT ")\n"
               "     --dev                     Development default: state and sockets under\n"
               "                               ./" SECD_DEV_DIR_DEFAULT "/, the invoking user is administrator and allowed\n"
               "\n"
               "Every configuration key (secd.conf(5)) is also an option and overrides the file:\n");
        for (size_t i = 0; i < config_n_keys(); i++) {
                const ConfigKeyInfo *k = config_key_info(i);
                char opt[64];
                size_t l;

                (void) snprintf(opt, sizeof opt, "%s=%s", k->name, k->metavar);
                for (char *p = opt; *p && *p != '='; p++)
                        if (*p == '_')
                                *p = '-';
                l = strlen(opt);
                printf("     --%s%*s %s\n", opt, l < 24 ? (int) (24 - l) : 0, "", k->help);
        }
}

static int parse_argv(Manager *m, int argc, char *argv[]) {
        static const struct option fixed[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "dev", no_argument, NULL, ARG_DEV },
        };
        size_t n_keys = config_n_keys(), n_fixed = ELEMENTSOF(fixed);
        _cleanup_free_ struct option *options = NULL;
        _cleanup_free_ char *names = NULL;
        int c;

        /* One option per configuration key: the same words as the file, dashes for underscores. */
        options = calloc(n_fixed + n_keys + 1, sizeof *options);
        names = calloc(n_keys, 64);
        if (!options || !names)
                return log_oom();
        memcpy(options, fixed, sizeof fixed);
        for (size_t i = 0; i < n_keys; i++) {
                char *name = names + i * 64;

                (void) snprintf(name, 64, "%s", config_key_info(i)->name);
                for (char *p = name; *p; p++)
                        if (*p == '_')
                                *p = '-';
                options[n_fixed + i] = (struct option) { name, required_argument, NULL, ARG_KEY_FIRST + (int) i };
        }

        m->cmdline_keys = calloc(n_keys * 4 + 1, sizeof(char *));
        m->cmdline_values = calloc(n_keys * 4 + 1, sizeof(char *));
        if (!m->cmdline_keys || !m->cmdline_values)
                return log_oom();

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("secd %s\n", SECD_VERSION);
                        return 0;
                case ARG_CONFIG:
                        free(m->config_file);
                        m->config_file = strdup(optarg);
                        if (!m->config_file)
                                return log_oom();
                        m->config_file_explicit = true;
                        break;
                case ARG_DEV:
                        m->dev = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        if (c < ARG_KEY_FIRST || (size_t) (c - ARG_KEY_FIRST) >= n_keys)
                                return -EINVAL;
                        if (m->n_cmdline >= n_keys * 4)
                                return log_error_errno(-E2BIG, "Too many options.");
                        m->cmdline_keys[m->n_cmdline] = strdup(config_key_info((size_t) (c - ARG_KEY_FIRST))->name);
                        m->cmdline_values[m->n_cmdline] = strdup(optarg);
                        if (!m->cmdline_keys[m->n_cmdline] || !m->cmdline_values[m->n_cmdline])
                                return log_oom();
                        m->n_cmdline++;
                }
        }
        if (optind < argc)
                return log_error_errno(-EINVAL, "Unexpected argument \"%s\"; see secd --help.", argv[optind]);
        return 1;
}

/* The admin group's gid, once at start: requests are authorised from peer credentials only. */
static int resolve_admin_group(Manager *m) {
        _cleanup_free_ char *buf = NULL;
        struct group gr, *result = NULL;
        size_t size = 4096;
        int r;

        for (;;) {
                char *b = realloc(buf, size);
                if (!b)
                        return log_oom();
                buf = b;
                r = getgrnam_r(m->config.admin_group, &gr, buf, size, &result);
                if (r != ERANGE)
                        break;
                if (size >= NSS_BUFFER_MAX)
                        return log_error_errno(-ERANGE, "The entry of group %s is too large.", m->config.admin_group);
                size *= 2;
        }
        if (r > 0)
                return log_error_errno(-r, "Cannot look up the admin group %s: %m", m->config.admin_group);
        if (!result)
                return log_error_errno(-ESRCH,
                                       "The admin group \"%s\" does not exist. Create it (see secd.conf(5), admin_group=) "
                                       "or configure an existing group; secd never opens the control socket to everyone.",
                                       m->config.admin_group);
        m->admin_gid = gr.gr_gid;
        return 0;
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("drain_timeout reached with %zu control connections still busy; closing them.",
                    m->n_control_connections);
        return sd_event_exit(m->event, m->exit_code);
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->stopping) {
                log_notice("Second termination signal: exiting now.");
                return sd_event_exit(m->event, m->exit_code);
        }
        m->stopping = true;
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        log_struct(LOG_INFO, si->ssi_signo == SIGINT ? "Interrupted, stopping." : "Stopping.", SECD_MESSAGE_STOPPING,
                   NULL);

        endpoint_disable_all(m);
        r = sd_event_add_time(m->event, &m->drain_source, CLOCK_MONOTONIC,
                              now_usec(CLOCK_MONOTONIC) + m->config.drain_timeout, 0, on_drain_timeout, m);
        if (r < 0) {
                log_error_errno(r, "Cannot arm the drain timer, exiting now: %m");
                return sd_event_exit(m->event, m->exit_code);
        }
        /* Data sessions get SHUTTING_DOWN and are closed now. */
        data_stop(m);
        /* Closes idle connections and followers; exits the loop when none is left. */
        control_stop(m);
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ const char **restart = NULL;
        _cleanup_free_ char *message = NULL, *joined = NULL;
        size_t len = 0;
        int r;

        if (m->stopping)
                return 0;
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=Reloading",
                          now_usec(CLOCK_MONOTONIC));
        r = manager_reload(m, &restart, NULL);
        if (r < 0)
                log_struct_errno(LOG_ERR, r, "Reload failed; the running configuration and policy stay in force.",
                                 SECD_MESSAGE_RELOAD, NULL);
        else {
                for (size_t i = 0; restart && restart[i]; i++)
                        len += strlen(restart[i]) + 2;
                joined = calloc(len + 1, 1);
                for (size_t i = 0; joined && restart && restart[i]; i++) {
                        if (i > 0)
                                strcat(joined, ", ");
                        strcat(joined, restart[i]);
                }
                message = strdup_printf("Reloaded on SIGHUP: policy generation %" PRIu64 "%s%s%s.",
                                policy_snapshot_generation(m->policy), isempty(joined) ? "" : "; restart needed for ",
                                joined ?: "", isempty(joined) ? "" : " (running values kept)");
                log_struct(LOG_INFO, message ?: "Reloaded on SIGHUP.", SECD_MESSAGE_RELOAD, NULL);
                manager_audit(m, "service", message ?: "reload", NULL);
        }
        (void) sd_notify(false, "READY=1");
        manager_send_status(m);
        return 0;
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "WATCHDOG=1");
        manager_send_status(m);
        (void) sd_event_source_set_time(s, usec + m->watchdog_usec / 2);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int setup_signals(Manager *m) {
        sigset_t mask;
        int r;

        /* sd_event_add_signal() needs the signals blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return negative_errno();
        /* A client hanging up mid-write must not kill the daemon (send() also uses MSG_NOSIGNAL). */
        (void) signal(SIGPIPE, SIG_IGN);

        r = sd_event_add_signal(m->event, &m->sigterm_source, SIGTERM, on_stop_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sigint_source, SIGINT, on_stop_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sighup_source, SIGHUP, on_sighup, m);
        return r;
}

static int setup_watchdog(Manager *m) {
        int r;

        r = sd_watchdog_enabled(false, &m->watchdog_usec);
        if (r <= 0)
                return r;
        log_debug("Watchdog enabled: WATCHDOG=1 every %" PRIu64 " ms.", m->watchdog_usec / 2000);
        return sd_event_add_time(m->event, &m->watchdog_source, CLOCK_MONOTONIC,
                                 now_usec(CLOCK_MONOTONIC) + m->watchdog_usec / 2, m->watchdog_usec / 20, on_watchdog, m);
}

/* --dev: allow the invoking user, once, on an empty policy. */
static int dev_seed_policy(Manager *m) {
        PolicyRule *rules = NULL;
        size_t n = 0;
        PolicyRule rule = {
                .action = POLICY_ACTION_ALLOW,
                .selectors = POLICY_SEL_UID,
                .uid = m->dev_uid,
                .gid = POLICY_ID_UNSET,
                .comment = (char *) "added by --dev",
        };
        _cleanup_free_ char *message = NULL;
        int64_t id;
        int r;

        r = db_rules_load(m->db, &rules, &n);
        if (r < 0)
                return log_error_errno(r, "Cannot read the policy: %m (%s)", db_last_error(m->db));
        policy_rules_free(rules, n);
        if (n > 0)
                return 0;

        r = db_rule_insert(m->db, &rule, &id);
        if (r < 0)
                return log_error_errno(r, "Cannot add the --dev rule: %m (%s)", db_last_error(m->db));
        if (asprintf(&message, "--dev: added rule %" PRIi64 " allowing uid %u.", id, (unsigned) m->dev_uid) >= 0) {
                log_struct(LOG_NOTICE, message, SECD_MESSAGE_POLICY_CHANGED, NULL);
                manager_audit(m, "policy", message, NULL);
        }
        return 0;
}

static void dev_print_instructions(Manager *m) {
        fprintf(stderr, "secd --dev: state in %s, sockets in %s\n", m->config.state_dir, m->config.runtime_dir);
        for (PolicyEndpoint k = 0; k < _POLICY_ENDPOINT_MAX; k++) {
                Endpoint *e = m->endpoints[k];
                if (!e)
                        continue;
                if (k == POLICY_ENDPOINT_CONTROL)
                        fprintf(stderr, "  control: %s\n    export SECCTL_SOCKET=%s\n",
                                e->address ?: "(passed by the service manager)", e->address ?: "<control socket>");
                else if (k == POLICY_ENDPOINT_TCP)
                        fprintf(stderr, "  tcp:     %s\n", m->config.tcp_listen ?: "(passed by the service manager)");
                else
                        fprintf(stderr, "  %-8s %s\n", k == POLICY_ENDPOINT_DATA ? "data:" : "enroll:",
                                e->address ?: "(passed by the service manager)");
        }
        fprintf(stderr, "  uid %u is administrator and allowed; stop with Ctrl-C.\n", (unsigned) m->dev_uid);
}

/*
 * glibc gives memory back to the kernel as soon as the top of a heap has
 * 128 KiB free, and serves every block above its (adaptive) mmap threshold
 * with a fresh mmap(). The writer thread and the loop allocate and free
 * message-sized blocks all the time, so under relay load the writer's
 * arena was shrunk with madvise() and faulted back in over and over: ~5 % of
 * secd's CPU in page faults and TLB shootdowns (perf, 64 senders). Keep up
 * to SECD_MALLOC_TRIM bytes of free heap instead, and take blocks up to
 * SECD_MALLOC_MMAP from the heap, where they are reused. Failure to set
 * either only costs speed.
 */
#define SECD_MALLOC_TRIM (32 * 1024 * 1024)
#define SECD_MALLOC_MMAP (4 * 1024 * 1024)

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char *error = NULL, *message = NULL;
        int r;

        (void) mallopt(M_TRIM_THRESHOLD, SECD_MALLOC_TRIM);
        (void) mallopt(M_MMAP_THRESHOLD, SECD_MALLOC_MMAP);
        log_setup("secd", LOG_TARGET_AUTO);

        r = manager_new(&m);
        if (r < 0) {
                (void) log_error_errno(r, "Cannot set up: %m");
                return EXIT_FAILURE;
        }

        r = parse_argv(m, argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        config_done(&m->config);
        r = manager_load_config(m, &m->config, &error);
        if (r < 0) {
                log_struct_errno(LOG_ERR, r, error ?: "Invalid configuration.", SECD_MESSAGE_ERROR, NULL);
                return EXIT_USAGE;
        }
        log_set_max_level(m->config.log_level);

        if (m->dev)
                m->dev_uid = getuid();
        else if (resolve_admin_group(m) < 0)
                return EXIT_USAGE;

        r = setup_signals(m);
        if (r < 0) {
                (void) log_error_errno(r, "Cannot set up signal handling: %m");
                return EXIT_FAILURE;
        }
        /*
         * Endpoints first: a wrong socket set-up, or another secd on our sockets, stops
         * the start before the store is touched. Nothing is served before the loop runs,
         * and the loop runs only after the policy is loaded.
         */
        if (endpoint_setup_all(m) < 0)
                return EXIT_FAILURE;
        if (manager_hash_cache_setup(m) < 0 || manager_open_store(m) < 0)
                return EXIT_FAILURE;
        r = hash_pool_new(m->event, m->hash_cache, &m->hash_pool);
        if (r < 0) {
                (void) log_error_errno(r, "Cannot start the hashing threads: %m");
                return EXIT_FAILURE;
        }
        if (manager_ca_open(m) < 0)
                return EXIT_FAILURE;
        if (tls_server_new(m->event, &m->tls) < 0)
                return EXIT_FAILURE;
        if (m->dev && dev_seed_policy(m) < 0)
                return EXIT_FAILURE;
        r = db_audit_trim(m->db, (size_t) m->config.audit_max_rows);
        if (r < 0)
                log_warning_errno(r, "Cannot trim the audit trail: %m (%s)", db_last_error(m->db));
        if (manager_policy_reload(m) < 0)
                return EXIT_FAILURE;
        r = setup_watchdog(m);
        if (r < 0) {
                (void) log_error_errno(r, "Cannot set up the watchdog: %m");
                return EXIT_FAILURE;
        }

        if (m->dev)
                dev_print_instructions(m);
        message = strdup_printf("secd %s started: policy generation %" PRIu64 ", %zu rules, mode %s%s.", SECD_VERSION,
                        policy_snapshot_generation(m->policy), policy_snapshot_n_rules(m->policy),
                        policy_mode_to_string(policy_snapshot_mode(m->policy)), m->dev ? ", --dev" : "");
        log_struct(LOG_INFO, message ?: "secd started.", SECD_MESSAGE_STARTED, NULL);

        /* Store, policy and every endpoint are attached: only now. */
        (void) sd_notify(false, "READY=1");
        manager_send_status(m);

        r = sd_event_loop(m->event);
        if (r < 0) {
                (void) log_error_errno(r, "Event loop failed: %m");
                return EXIT_FAILURE;
        }
        log_info("Stopped.");
        return r;
}

int main(int argc, char *argv[]) {
        return run(argc, argv);
}
