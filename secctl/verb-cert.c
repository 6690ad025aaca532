/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secctl cert issue|list|revoke|crl and ca show: the io.secd.Certs and
 * io.secd.CA interfaces (secd/interfaces/io.secd.Certs.varlink,
 * io.secd.CA.varlink).
 *
 * cert issue writes a private key: the key file is created 0600 with
 * O_EXCL|O_NOFOLLOW before secd is asked (so it never exists with wider
 * permissions, an existing file is never overwritten, and no certificate is
 * issued whose key could not be saved), and every copy of the key secctl
 * holds is wiped once written.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "secctl.h"

#define CERT_SERIAL_HEX_LEN 32
#define CERT_VALIDITY_MAX_USEC (UINT64_C(825) * 24 * 3600 * 1000000)
#define CERT_VALIDITY_TEXT_MAX 64

static int add_string(json_object *o, const char *key, const char *value) {
        json_object *v = json_object_new_string(value);

        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

bool ctl_cert_serial_valid(const char *s) {
        if (!s || strlen(s) != CERT_SERIAL_HEX_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
                        return false;
        return true;
}

int ctl_cert_parse_validity(const char *s, uint64_t *ret) {
        uint64_t usec;
        int r;

        if (isempty(s) || strnlen(s, CERT_VALIDITY_TEXT_MAX + 1) > CERT_VALIDITY_TEXT_MAX)
                return -EINVAL;
        r = parse_duration_usec(s, &usec);
        if (r < 0)
                return r;
        if (usec < UINT64_C(1000000) || usec > CERT_VALIDITY_MAX_USEC)
                return -ERANGE;
        *ret = usec;
        return 0;
}

/* ---- cert issue ---- */

/* Wipe a string that json-c owns (the key in the reply) before the object goes. */
static void json_string_wipe(json_object *o, const char *key) {
        json_object *v;

        if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)) {
                int n = json_object_get_string_len(v);

                if (n > 0)
                        explicit_bzero((char *) json_object_get_string(v), (size_t) n);
        }
}

static int write_all(int fd, const char *data, size_t size) {
        while (size > 0) {
                ssize_t n = write(fd, data, size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                data += n;
                size -= (size_t) n;
        }
        return 0;
}

/* Create dir/name exclusively with exactly mode (umask cannot widen it; fchmod undoes narrowing). */
static int create_exclusive(int dir_fd, const char *name, mode_t mode) {
        int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode) < 0) {
                int r = -errno;
                (void) close(fd);
                (void) unlinkat(dir_fd, name, 0);
                return r;
        }
        return fd;
}

static int finish_file(int fd, const char *data) {
        int r = write_all(fd, data, strlen(data));

        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        return r;
}

/*
 * ca.crt is shared by every certificate issued into DIR: replace it atomically. Like every
 * file cert issue writes it is 0600: the directory is one host's credentials, handed over whole.
 */
static int write_ca_file(int dir_fd, const char *pem) {
        char tmp[64];
        int fd, r;

        (void) snprintf(tmp, sizeof tmp, ".ca.crt.%d.tmp", (int) getpid());
        (void) unlinkat(dir_fd, tmp, 0);
        fd = create_exclusive(dir_fd, tmp, 0600);
        if (fd < 0)
                return fd;
        r = finish_file(fd, pem);
        if (r >= 0 && renameat(dir_fd, tmp, dir_fd, "ca.crt") < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

int ctl_verb_cert_issue(CtlContext *ctx) {
        _cleanup_control_ secclient_control *c = NULL;
        _cleanup_json_ json_object *params = NULL, *reply = NULL, *out = NULL;
        _cleanup_free_ char *key_name = NULL, *crt_name = NULL, *text = NULL, *error = NULL;
        _cleanup_close_ int dir_fd = -EBADF;
        const char *name = ctx->args[0], *key = NULL, *cert = NULL, *ca = NULL, *serial = NULL, *expires = NULL;
        int key_fd = -EBADF, crt_fd = -EBADF, r, status = CTL_EXIT_FAILURE;
        uint64_t usec;

        if (!ctl_cert_name_valid(name)) {
                log_error("Invalid certificate name '%s': expected 1 to %d characters A-Z a-z 0-9 . _ -.", name,
                          CTL_CERT_NAME_MAX);
                return CTL_EXIT_USAGE;
        }
        if (!ctx->cert_out) {
                log_error("'cert issue' needs --out DIR: where to write %s.key, %s.crt and ca.crt.", name, name);
                return CTL_EXIT_USAGE;
        }
        if (ctx->cert_valid && ctl_cert_parse_validity(ctx->cert_valid, &usec) < 0) {
                log_error("Invalid --valid '%s': expected a duration such as 30d, 12h or 1d12h, "
                          "from 1s to 825d.", ctx->cert_valid);
                return CTL_EXIT_USAGE;
        }

        dir_fd = open(ctx->cert_out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0) {
                log_error("Cannot open --out %s: %m.", ctx->cert_out);
                return CTL_EXIT_USAGE;
        }
        if (asprintf(&key_name, "%s.key", name) < 0) {
                key_name = NULL;
                return log_oom(), CTL_EXIT_FAILURE;
        }
        if (asprintf(&crt_name, "%s.crt", name) < 0) {
                crt_name = NULL;
                return log_oom(), CTL_EXIT_FAILURE;
        }

        /* Both files first, exclusively: nothing is overwritten and nothing is issued in vain. */
        key_fd = create_exclusive(dir_fd, key_name, 0600);
        if (key_fd < 0) {
                log_error("Cannot create %s/%s: %s.%s", ctx->cert_out, key_name, strerror(-key_fd),
                          key_fd == -EEXIST ? " Refusing to overwrite it; remove it or choose another name." : "");
                return key_fd == -EEXIST ? CTL_EXIT_FAILURE : CTL_EXIT_USAGE;
        }
        crt_fd = create_exclusive(dir_fd, crt_name, 0600);
        if (crt_fd < 0) {
                log_error("Cannot create %s/%s: %s.%s", ctx->cert_out, crt_name, strerror(-crt_fd),
                          crt_fd == -EEXIST ? " Refusing to overwrite it; remove it or choose another name." : "");
                goto fail;
        }

        params = json_object_new_object();
        if (!params || add_string(params, "name", name) < 0 ||
            (ctx->cert_valid && add_string(params, "validity", ctx->cert_valid) < 0)) {
                log_oom();
                goto fail;
        }

        r = ctl_connect(ctx, &c);
        if (r != 0) {
                status = r;
                goto fail;
        }
        r = secclient_control_call(c, "io.secd.Certs.Issue", json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN),
                                   &text, &error);
        if (r == -EREMOTEIO) {
                status = ctl_varlink_error(ctx, error, text);
                goto fail;
        }
        if (r < 0) {
                status = ctl_transport_error(ctx, r, "io.secd.Certs.Issue");
                goto fail;
        }
        reply = json_tokener_parse(text);
        /* The reply text held the key: wipe it now that it is parsed. */
        explicit_bzero(text, strlen(text));
        if (!reply || ctl_json_get_string(reply, "key", &key) < 0 ||
            ctl_json_get_string(reply, "certificate", &cert) < 0 || ctl_json_get_string(reply, "ca", &ca) < 0 ||
            ctl_json_get_string(reply, "serial", &serial) < 0 || ctl_json_get_string(reply, "expires", &expires) < 0) {
                status = ctl_bad_reply("io.secd.Certs.Issue");
                goto fail;
        }

        r = finish_file(key_fd, key);
        key_fd = -EBADF;
        json_string_wipe(reply, "key");
        if (r < 0) {
                log_error("Cannot write %s/%s: %s.", ctx->cert_out, key_name, strerror(-r));
                goto fail_revoke_hint;
        }
        r = finish_file(crt_fd, cert);
        crt_fd = -EBADF;
        if (r < 0) {
                log_error("Cannot write %s/%s: %s.", ctx->cert_out, crt_name, strerror(-r));
                goto fail_revoke_hint;
        }
        r = write_ca_file(dir_fd, ca);
        if (r < 0) {
                log_error("Cannot write %s/ca.crt: %s.", ctx->cert_out, strerror(-r));
                goto fail_revoke_hint;
        }

        if (ctx->json) {
                out = json_object_new_object();
                if (!out || add_string(out, "serial", serial) < 0 || add_string(out, "expires", expires) < 0 ||
                    add_string(out, "key_file", key_name) < 0 || add_string(out, "certificate_file", crt_name) < 0 ||
                    add_string(out, "ca_file", "ca.crt") < 0 || add_string(out, "directory", ctx->cert_out) < 0)
                        return log_oom(), CTL_EXIT_FAILURE;
                ctl_json_print(ctx->out, out);
        } else
                fprintf(ctx->out,
                        "Issued certificate %s for \"%s\", valid until %s.\n"
                        "key:         %s/%s (keep it secret)\n"
                        "certificate: %s/%s\n"
                        "CA:          %s/ca.crt\n",
                        serial, name, expires, ctx->cert_out, key_name, ctx->cert_out, crt_name, ctx->cert_out);
        return CTL_EXIT_SUCCESS;

fail_revoke_hint:
        log_error("Certificate %s was issued but not saved; revoke it with 'secctl cert revoke %s'.", serial, serial);
fail:
        json_string_wipe(reply, "key");
        if (key_fd >= 0)
                (void) close(key_fd);
        if (crt_fd >= 0)
                (void) close(crt_fd);
        /* Only what this run created (O_EXCL above): never a file that was there before. */
        (void) unlinkat(dir_fd, key_name, 0);
        if (crt_fd != -EEXIST)
                (void) unlinkat(dir_fd, crt_name, 0);
        return status;
}

/* ---- cert list ---- */

int ctl_certs_table(json_object *certs, CtlTable **ret) {
        static const char *const headers[] = { "SERIAL", "KIND", "HOLDER", "NOT-AFTER", "STATE" };
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        size_t n;
        int r;

        if (!json_object_is_type(certs, json_type_array))
                return -EBADMSG;
        r = ctl_table_new(ELEMENTSOF(headers), headers, &t);
        if (r < 0)
                return r;
        n = json_object_array_length(certs);
        for (size_t i = 0; i < n; i++) {
                json_object *cert = json_object_array_get_idx(certs, i);
                const char *serial = NULL, *kind = NULL, *name = NULL, *sha = NULL, *not_after = NULL, *revoked_at = NULL;
                char holder[CTL_CERT_NAME_MAX + 64 + 32], state[64];
                bool revoked = false, has_uid = false;
                int64_t uid = 0;

                if (!json_object_is_type(cert, json_type_object) || ctl_json_get_string(cert, "serial", &serial) < 0 ||
                    ctl_json_get_string(cert, "kind", &kind) < 0 || ctl_json_get_string_opt(cert, "name", &name) < 0 ||
                    ctl_json_get_int_opt(cert, "uid", &has_uid, &uid) < 0 ||
                    ctl_json_get_string_opt(cert, "sha256", &sha) < 0 ||
                    ctl_json_get_string(cert, "not_after", &not_after) < 0 ||
                    ctl_json_get_bool(cert, "revoked", &revoked) < 0 ||
                    ctl_json_get_string_opt(cert, "revoked_at", &revoked_at) < 0)
                        return -EBADMSG;
                if (name)
                        (void) snprintf(holder, sizeof holder, "%s", name);
                else if (has_uid)
                        (void) snprintf(holder, sizeof holder, "uid %" PRId64 "%s%.12s%s", uid, sha ? " sha256 " : "",
                                        sha ?: "", sha ? "…" : "");
                else
                        holder[0] = '\0';
                if (revoked)
                        (void) snprintf(state, sizeof state, "revoked %s", revoked_at ?: "");
                else
                        (void) snprintf(state, sizeof state, "valid");
                r = ctl_table_add_row(t, (const char *const[]) { serial, kind, holder, not_after, state });
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

int ctl_verb_cert_list(CtlContext *ctx) {
        _cleanup_json_ json_object *params = NULL, *reply = NULL;
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        json_object *certs;
        size_t n;
        int r;

        if (ctx->all) {
                params = json_object_new_object();
                if (!params || json_object_object_add(params, "all", json_object_new_boolean(true)) < 0)
                        return log_oom(), CTL_EXIT_FAILURE;
        }
        r = ctl_call_once(ctx, "io.secd.Certs.List", params, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (!json_object_object_get_ex(reply, "certificates", &certs))
                return ctl_bad_reply("io.secd.Certs.List");
        r = ctl_certs_table(certs, &t);
        if (r == -ENOMEM)
                return log_oom(), CTL_EXIT_FAILURE;
        if (r < 0)
                return ctl_bad_reply("io.secd.Certs.List");
        (void) ctl_table_print(t, ctx->out, ctx->legend);
        n = ctl_table_rows(t);
        if (ctx->legend)
                fprintf(ctx->out, "\n%zu certificate%s%s\n", n, n == 1 ? "" : "s",
                        ctx->all ? "" : " (expired ones hidden; --all shows them)");
        return 0;
}

/* ---- cert revoke, cert crl, ca show ---- */

int ctl_cert_revoke_params(const char *arg, json_object **ret) {
        _cleanup_json_ json_object *params = NULL;
        char lower[CERT_SERIAL_HEX_LEN + 1];
        bool serial = ctl_cert_serial_valid(arg);

        /* 32 hexadecimal characters are a serial, anything else must be a name. */
        if (!serial && !ctl_cert_name_valid(arg))
                return -EINVAL;
        params = json_object_new_object();
        if (!params)
                return -ENOMEM;
        if (serial) {
                for (size_t i = 0; i <= CERT_SERIAL_HEX_LEN; i++)
                        lower[i] = (char) (arg[i] >= 'A' && arg[i] <= 'F' ? arg[i] - 'A' + 'a' : arg[i]);
                if (add_string(params, "serial", lower) < 0)
                        return -ENOMEM;
        } else if (add_string(params, "name", arg) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(params);
        return 0;
}

int ctl_verb_cert_revoke(CtlContext *ctx) {
        _cleanup_json_ json_object *params = NULL, *reply = NULL;
        json_object *revoked;
        int r;

        r = ctl_cert_revoke_params(ctx->args[0], &params);
        if (r == -EINVAL) {
                log_error("Invalid argument '%s': expected a serial (32 hexadecimal characters, see 'secctl cert "
                          "list') or a certificate name (1 to %d characters A-Z a-z 0-9 . _ -).",
                          ctx->args[0], CTL_CERT_NAME_MAX);
                return CTL_EXIT_USAGE;
        }
        if (r < 0)
                return log_oom(), CTL_EXIT_FAILURE;

        r = ctl_call_once(ctx, "io.secd.Certs.Revoke", params, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (!json_object_object_get_ex(reply, "revoked", &revoked) || !json_object_is_type(revoked, json_type_array))
                return ctl_bad_reply("io.secd.Certs.Revoke");
        for (size_t i = 0; i < json_object_array_length(revoked); i++) {
                json_object *s = json_object_array_get_idx(revoked, i);

                if (!json_object_is_type(s, json_type_string))
                        return ctl_bad_reply("io.secd.Certs.Revoke");
                fprintf(ctx->out, "%s\n", json_object_get_string(s));
        }
        return 0;
}

int ctl_verb_cert_crl(CtlContext *ctx) {
        _cleanup_json_ json_object *reply = NULL;
        const char *crl;
        int r;

        r = ctl_call_once(ctx, "io.secd.Certs.Crl", NULL, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (ctl_json_get_string(reply, "crl", &crl) < 0)
                return ctl_bad_reply("io.secd.Certs.Crl");
        fputs(crl, ctx->out);
        return 0;
}

int ctl_verb_ca_show(CtlContext *ctx) {
        _cleanup_json_ json_object *reply = NULL;
        const char *ca, *algorithm, *subject, *not_before, *not_after, *fingerprint;
        int r;

        r = ctl_call_once(ctx, "io.secd.CA.Get", NULL, &reply);
        if (r != 0)
                return r;
        if (ctx->json) {
                ctl_json_print(ctx->out, reply);
                return 0;
        }
        if (ctl_json_get_string(reply, "ca", &ca) < 0 || ctl_json_get_string(reply, "algorithm", &algorithm) < 0 ||
            ctl_json_get_string(reply, "subject", &subject) < 0 ||
            ctl_json_get_string(reply, "not_before", &not_before) < 0 ||
            ctl_json_get_string(reply, "not_after", &not_after) < 0 ||
            ctl_json_get_string(reply, "fingerprint", &fingerprint) < 0)
                return ctl_bad_reply("io.secd.CA.Get");
        fprintf(ctx->out,
                "subject: %s\n"
                "algorithm: %s\n"
                "not before: %s\n"
                "not after: %s\n"
                "fingerprint (SHA-256): %s\n"
                "%s",
                subject, algorithm, not_before, not_after, fingerprint, ca);
        return 0;
}
