/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <cmocka.h>

#include "log.h"
#include "secctl.h"

#define ABC_SHA256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define NO_SOCKET "/nonexistent-secctl-test/control.sock"

typedef struct RunResult {
        int status;
        char *out;
        char *err;
} RunResult;

static void run_result_done(RunResult *r) {
        free(r->out);
        free(r->err);
        *r = (RunResult) {};
}

static char *read_fd_all(int fd) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        char chunk[4096];
        ssize_t n;

        assert_non_null(f);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        while ((n = read(fd, chunk, sizeof chunk)) > 0)
                fwrite(chunk, 1, (size_t) n, f);
        fclose(f);
        return buf;
}

/* Run secctl with argv (NULL-terminated), capturing its stdout and stderr. */
static RunResult run_argv(char **argv) {
        RunResult res = {};
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        char tmpl[] = "/tmp/test-secctl-err-XXXXXX";
        int errfd = mkstemp(tmpl), saved;
        int argc = 0;

        assert_non_null(out);
        assert_true(errfd >= 0);
        (void) unlink(tmpl);
        while (argv[argc])
                argc++;

        fflush(stderr);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(errfd, STDERR_FILENO) >= 0);

        res.status = ctl_run_to(argc, argv, out);

        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        fclose(out);
        res.out = buf;
        res.err = read_fd_all(errfd);
        close(errfd);
        return res;
}

#define RUN(...) run_argv((char *[]) { "secctl", __VA_ARGS__, NULL })

static void assert_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle))
                fail_msg("expected \"%s\" in:\n%s", needle, haystack);
}

/* Expect exit status 2 and a message on stderr mentioning needle, nothing on stdout. */
static void expect_usage(RunResult r, const char *needle) {
        if (r.status != CTL_EXIT_USAGE)
                fail_msg("expected exit 2, got %d; stderr:\n%s", r.status, r.err);
        assert_string_equal(r.out, "");
        assert_contains(r.err, "secctl: ");
        assert_contains(r.err, needle);
        run_result_done(&r);
}

static char *read_file(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        char *s;

        if (fd < 0)
                fail_msg("cannot open %s: %m", path);
        s = read_fd_all(fd);
        close(fd);
        return s;
}

static void test_verb_lookup(void **state) {
        const CtlVerb *v;
        int taken;
        char name[64];

        assert_int_equal(ctl_verb_find((char *[]) { "status" }, 1, &v, &taken), 0);
        assert_ptr_equal(v->handler, ctl_verb_status);
        assert_int_equal(taken, 1);
        assert_int_equal(ctl_verb_find((char *[]) { "policy", "allow", "x" }, 3, &v, &taken), 0);
        assert_ptr_equal(v->handler, ctl_verb_policy_allow);
        assert_int_equal(taken, 2);
        assert_int_equal(ctl_verb_find((char *[]) { "policy" }, 1, &v, &taken), -ENXIO);
        assert_int_equal(ctl_verb_find((char *[]) { "policy", "frobnicate" }, 2, &v, &taken), -ENXIO);
        assert_int_equal(ctl_verb_find((char *[]) { "frobnicate" }, 1, &v, &taken), -ENOENT);
        assert_int_equal(ctl_verb_find(NULL, 0, &v, &taken), -ENOENT);

        /* Every entry is reachable by its own name, and names are unique. */
        for (size_t i = 0; i < ctl_verbs_count; i++) {
                char *words[2] = { (char *) ctl_verbs[i].name, (char *) ctl_verbs[i].sub };

                assert_int_equal(ctl_verb_find(words, ctl_verbs[i].sub ? 2 : 1, &v, &taken), 0);
                assert_ptr_equal(v, &ctl_verbs[i]);
                assert_true(ctl_verbs[i].min_args <= ctl_verbs[i].max_args);
                assert_non_null(ctl_verbs[i].help);
                assert_true(strlen(ctl_verb_full_name(v, name, sizeof name)) > 0);
        }
}

static void test_help_and_version(void **state) {
        RunResult r = RUN("--help");
        char name[64];

        assert_int_equal(r.status, 0);
        assert_string_equal(r.err, "");
        assert_contains(r.out, "Usage: secctl");
        for (size_t i = 0; i < ctl_verbs_count; i++) {
                assert_contains(r.out, ctl_verb_full_name(&ctl_verbs[i], name, sizeof name));
                assert_contains(r.out, ctl_verbs[i].help);
        }
        for (size_t i = 0; i < ctl_options_count; i++)
                assert_contains(r.out, ctl_options[i].name);
        assert_contains(r.out, "Exit status:");
        assert_contains(r.out, "  4  cannot reach secd");
        run_result_done(&r);

        /* --help wins wherever it is. */
        r = RUN("policy", "allow", "--help");
        assert_int_equal(r.status, 0);
        assert_contains(r.out, "Usage: secctl");
        run_result_done(&r);

        r = RUN("--version");
        assert_int_equal(r.status, 0);
        assert_string_equal(r.out, "secctl " SECD_VERSION "\n");
        run_result_done(&r);

        r = RUN("version");
        assert_int_equal(r.status, 0);
        assert_contains(r.out, "secctl " SECD_VERSION "\nlibsecclient ");
        run_result_done(&r);

        r = RUN("--json", "version");
        assert_int_equal(r.status, 0);
        assert_contains(r.out, "\"secctl\": \"" SECD_VERSION "\"");
        run_result_done(&r);
}

static void test_argument_counts(void **state) {
        expect_usage(run_argv((char *[]) { "secctl", NULL }), "Missing verb");
        expect_usage(RUN("frobnicate"), "Unknown verb 'frobnicate'");
        expect_usage(RUN("policy"), "'policy' needs a verb: list, allow, deny, remove, mode, test, export, import");
        expect_usage(RUN("policy", "frob"), "Unknown verb 'policy frob'");
        expect_usage(RUN("status", "extra"), "'status' takes no arguments");
        expect_usage(RUN("policy", "remove"), "'policy remove' needs 1 argument");
        expect_usage(RUN("policy", "remove", "1", "2"), "'policy remove' takes at most 1 argument");
        expect_usage(RUN("policy", "export", "a", "b"), "takes at most 1 argument");
        expect_usage(RUN("policy", "import"), "needs 1 argument");
        expect_usage(RUN("policy", "mode"), "needs 1 argument");
        expect_usage(RUN("hash"), "'hash' needs at least 1 argument");
        expect_usage(RUN("policy", "list", "--follow"), "Option --follow does not apply to 'policy list'");
        expect_usage(RUN("status", "--uid", "0"), "Option --uid does not apply to 'status'");
        expect_usage(RUN("audit", "--comment", "x"), "does not apply to 'audit'");
}

static void test_option_parsing(void **state) {
        expect_usage(RUN("policy", "allow", "--frobnicate"), "Unknown option '--frobnicate'");
        expect_usage(RUN("-x", "status"), "Unknown option '-x'");
        expect_usage(RUN("policy", "allow", "--uid"), "Option --uid needs an argument (UID)");
        expect_usage(RUN("--json=yes", "status"), "Option --json takes no argument");
        expect_usage(RUN("policy", "allow", "--uid", "abc"), "Invalid --uid 'abc'");
        expect_usage(RUN("policy", "allow", "--uid", "-1"), "Invalid --uid '-1'");
        expect_usage(RUN("policy", "allow", "--uid", "4294967295"), "Invalid --uid '4294967295'");
        expect_usage(RUN("policy", "deny", "--gid", "1x"), "Invalid --gid '1x'");
        expect_usage(RUN("policy", "allow", "--sha256", "abc"), "Invalid --sha256 'abc'");
        expect_usage(RUN("policy", "allow", "--sha256", ABC_SHA256 "0"), "Invalid --sha256");
        expect_usage(RUN("policy", "allow", "--sha256",
                         "zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                     "Invalid --sha256");
        expect_usage(RUN("policy", "allow", "--path", "usr/bin/x"), "Invalid --path 'usr/bin/x'");
        expect_usage(RUN("policy", "allow", "--path", "/usr/bin/../x"), "Invalid --path");
        expect_usage(RUN("policy", "allow", "--path", "/usr//bin/x"), "Invalid --path");
        expect_usage(RUN("policy", "allow", "--path", "/usr/bin/"), "Invalid --path");
        expect_usage(RUN("policy", "allow", "--endpoint", "web"), "Invalid --endpoint 'web'");
        expect_usage(RUN("policy", "allow", "--cert", "a/b"), "Invalid --cert 'a/b'");
        expect_usage(RUN("policy", "deny", "--cert", ""), "Invalid --cert ''");
        expect_usage(RUN("policy", "test", "--uid", "0", "--cert",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "Invalid --cert");
        expect_usage(RUN("policy", "list", "--cert", "x"), "Option --cert does not apply to 'policy list'");
        expect_usage(RUN("policy", "allow", "--user", ""), "Invalid --user");
        expect_usage(RUN("policy", "allow", "--user", "a b"), "Invalid --user");
        expect_usage(RUN("policy", "allow", "--comment", "bell\a"), "Invalid --comment");
        expect_usage(RUN("policy", "allow", "--uid", "1", "--uid", "2"), "Option --uid given twice");
        expect_usage(RUN("policy", "allow"), "needs at least one selector");
        expect_usage(RUN("policy", "deny", "--comment", "nothing else"), "needs at least one selector");
        expect_usage(RUN("policy", "allow", "--binary", "/bin/sh", "--sha256", ABC_SHA256),
                     "do not combine it with --path or --sha256");
        expect_usage(RUN("policy", "allow", "--binary", "/nonexistent/binary"),
                     "Cannot use --binary /nonexistent/binary");
        expect_usage(RUN("policy", "test", "--endpoint", "data"), "needs the client's user: --uid UID or --user NAME");
        expect_usage(RUN("policy", "test", "--uid", "0", "--binary", "/bin/sh", "--sha256", ABC_SHA256),
                     "not both");
        expect_usage(RUN("policy", "test", "--user", "root", "--uid", "1"), "--user root is uid 0, but --uid says 1");
        expect_usage(RUN("policy", "test", "--user", "no-such-user-secctl"), "no such user");
        expect_usage(RUN("policy", "remove", "abc"), "Invalid rule id 'abc'");
        expect_usage(RUN("policy", "remove", "0"), "Invalid rule id '0'");
        expect_usage(RUN("policy", "remove", "9223372036854775808"), "Invalid rule id");
        expect_usage(RUN("policy", "mode", "lenient"), "Invalid mode 'lenient': expected enforce or permissive");
        expect_usage(RUN("audit", "--limit", "0"), "Invalid --limit '0'");
        expect_usage(RUN("audit", "--limit", "1001"), "Invalid --limit '1001'");
        expect_usage(RUN("--socket", "", "status"), "Invalid --socket");
        expect_usage(RUN("policy", "import", "/nonexistent/policy.json"), "Cannot read /nonexistent/policy.json");
}

static void test_parse_success(void **state) {
        CtlContext ctx;
        char *argv[] = { "secctl", "policy", "allow", "--user", "alice", "--uid", "1000", "--gid=50",
                         "--sha256", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                         "--endpoint", "data", "--comment", "app for alice", "--path", "/usr/bin/app",
                         "--json", "--no-legend", NULL };

        assert_int_equal(ctl_parse_argv((int) ELEMENTSOF(argv) - 1, argv, &ctx, NULL), 0);
        assert_ptr_equal(ctx.verb->handler, ctl_verb_policy_allow);
        assert_int_equal(ctx.n_args, 0);
        assert_true(ctx.json);
        assert_false(ctx.legend);
        assert_string_equal(ctx.sel.user, "alice");
        assert_true(ctx.sel.has_uid);
        assert_int_equal(ctx.sel.uid, 1000);
        assert_true(ctx.sel.has_gid);
        assert_int_equal(ctx.sel.gid, 50);
        assert_string_equal(ctx.sel.sha256, ABC_SHA256); /* normalised to lower case */
        assert_string_equal(ctx.sel.endpoint, "data");
        assert_string_equal(ctx.sel.comment, "app for alice");
        assert_string_equal(ctx.sel.path, "/usr/bin/app");
        ctl_context_done(&ctx);

        /* "--" ends options: a file called "-x" can be hashed. */
        char *argv2[] = { "secctl", "hash", "--", "-x", "/y", NULL };
        assert_int_equal(ctl_parse_argv((int) ELEMENTSOF(argv2) - 1, argv2, &ctx, NULL), 0);
        assert_ptr_equal(ctx.verb->handler, ctl_verb_hash);
        assert_int_equal(ctx.n_args, 2);
        assert_string_equal(ctx.args[0], "-x");
        ctl_context_done(&ctx);

        /* Options after the verb work also under POSIXLY_CORRECT. */
        char *argv4[] = { "secctl", "policy", "remove", "7", "--json", NULL };
        setenv("POSIXLY_CORRECT", "1", 1);
        assert_int_equal(ctl_parse_argv((int) ELEMENTSOF(argv4) - 1, argv4, &ctx, NULL), 0);
        unsetenv("POSIXLY_CORRECT");
        assert_true(ctx.json);
        assert_int_equal(ctx.n_args, 1);
        assert_string_equal(ctx.args[0], "7");
        ctl_context_done(&ctx);

        /* Socket: --socket, then $SECCTL_SOCKET, then the default. */
        char *argv3[] = { "secctl", "audit", "--follow", "--limit", "5", NULL };
        unsetenv("SECCTL_SOCKET");
        assert_int_equal(ctl_parse_argv((int) ELEMENTSOF(argv3) - 1, argv3, &ctx, NULL), 0);
        assert_true(ctx.follow);
        assert_int_equal(ctx.limit, 5);
        assert_string_equal(ctl_socket_path(&ctx), "/run/secd/control.sock");
        setenv("SECCTL_SOCKET", "/tmp/x.sock", 1);
        assert_string_equal(ctl_socket_path(&ctx), "/tmp/x.sock");
        ctx.socket = "/tmp/y.sock";
        assert_string_equal(ctl_socket_path(&ctx), "/tmp/y.sock");
        unsetenv("SECCTL_SOCKET");
        ctl_context_done(&ctx);
}

static void test_unreachable(void **state) {
        RunResult r = RUN("--socket", NO_SOCKET, "status");

        assert_int_equal(r.status, CTL_EXIT_UNREACHABLE);
        assert_string_equal(r.out, "");
        assert_contains(r.err, "Cannot reach secd at " NO_SOCKET);
        assert_contains(r.err, "systemctl status secd.socket");
        assert_contains(r.err, "SECCTL_SOCKET");
        run_result_done(&r);

        setenv("SECCTL_SOCKET", NO_SOCKET, 1);
        r = RUN("policy", "allow", "--uid", "0");
        unsetenv("SECCTL_SOCKET");
        assert_int_equal(r.status, CTL_EXIT_UNREACHABLE);
        assert_contains(r.err, NO_SOCKET);
        run_result_done(&r);
}

static void test_error_mapping(void **state) {
        CtlContext ctx = { .socket = NO_SOCKET };
        int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY | O_CLOEXEC);

        /* Messages are checked through ctl_run elsewhere; here only the statuses. */
        assert_true(saved >= 0 && null >= 0);
        fflush(stderr);
        dup2(null, STDERR_FILENO);
        assert_int_equal(ctl_varlink_error(&ctx, "io.secd.Policy.PermissionDenied", "{}"), CTL_EXIT_PERMISSION);
        assert_int_equal(ctl_varlink_error(&ctx, "io.secd.Audit.PermissionDenied", NULL), CTL_EXIT_PERMISSION);
        assert_int_equal(ctl_varlink_error(&ctx, "io.secd.Policy.NoSuchRule", "{\"id\":7}"), CTL_EXIT_FAILURE);
        assert_int_equal(ctl_varlink_error(&ctx, "io.secd.Policy.InvalidRule",
                                           "{\"field\":\"path\",\"reason\":\"not absolute\"}"), CTL_EXIT_USAGE);
        assert_int_equal(ctl_varlink_error(&ctx, "io.secd.Policy.UnknownName",
                                           "{\"field\":\"user\",\"name\":\"bob\"}"), CTL_EXIT_USAGE);
        assert_int_equal(ctl_varlink_error(&ctx, "org.varlink.service.InvalidParameter",
                                           "{\"parameter\":\"uid\"}"), CTL_EXIT_USAGE);
        assert_int_equal(ctl_varlink_error(&ctx, "org.varlink.service.MethodNotFound", "{}"), CTL_EXIT_FAILURE);
        assert_int_equal(ctl_varlink_error(&ctx, "io.secd.Policy.CannotHash", "not json"), CTL_EXIT_FAILURE);
        assert_int_equal(ctl_transport_error(&ctx, -ENOENT, NULL), CTL_EXIT_UNREACHABLE);
        assert_int_equal(ctl_transport_error(&ctx, -ECONNREFUSED, NULL), CTL_EXIT_UNREACHABLE);
        assert_int_equal(ctl_transport_error(&ctx, -ETIMEDOUT, "x.y.Z"), CTL_EXIT_UNREACHABLE);
        assert_int_equal(ctl_transport_error(&ctx, -EACCES, NULL), CTL_EXIT_PERMISSION);
        assert_int_equal(ctl_transport_error(&ctx, -EBADMSG, "x.y.Z"), CTL_EXIT_FAILURE);
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(null);
}

static void test_error_messages(void **state) {
        CtlContext ctx = { .socket = NO_SOCKET };
        char tmpl[] = "/tmp/test-secctl-msg-XXXXXX";
        int fd = mkstemp(tmpl), saved = dup(STDERR_FILENO);
        char *text;

        assert_true(fd >= 0 && saved >= 0);
        unlink(tmpl);
        fflush(stderr);
        dup2(fd, STDERR_FILENO);
        (void) ctl_varlink_error(&ctx, "io.secd.Policy.NoSuchRule", "{\"id\":7}");
        (void) ctl_varlink_error(&ctx, "io.secd.Policy.InvalidRule", "{\"field\":\"sha256\",\"reason\":\"bad\"}");
        (void) ctl_varlink_error(&ctx, "io.secd.Policy.UnknownName", "{\"field\":\"group\",\"name\":\"wheel\"}");
        (void) ctl_varlink_error(&ctx, "io.secd.Status.PermissionDenied", "{}");
        (void) ctl_varlink_error(&ctx, "io.secd.Policy.UnknownName", "{\"field\":\"uid\",\"name\":\"4343\"}");
        (void) ctl_varlink_error(&ctx, "io.secd.Policy.UnknownName",
                                 "{\"field\":\"rules[2].user\",\"name\":\"bob\"}");
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        text = read_fd_all(fd);
        close(fd);
        assert_contains(text, "secctl: No rule with id 7.");
        assert_contains(text, "secd refused the field 'sha256' (--sha256): bad.");
        assert_contains(text, "No user with uid 4343 (--uid) on this system");
        assert_contains(text, "Unknown name 'bob' in 'rules[2].user'");
        assert_contains(text, "Unknown group name 'wheel' (--group)");
        assert_contains(text, "member of the 'secd-admin' group");
        free(text);
}

static void test_add_params(void **state) {
        CtlSelectors sel = {
                .user = "alice",
                .uid = 1000,
                .has_uid = true,
                .group = "staff",
                .gid = 50,
                .has_gid = true,
                .path = "/usr/bin/app",
                .sha256 = ABC_SHA256,
                .endpoint = "data",
                .cert = "backup-1",
                .comment = "app \"for\" alice",
        };
        json_object *params = NULL, *rule;
        _cleanup_free_ char *iface = read_file(SECCTL_POLICY_INTERFACE);
        const char *rule_type;

        assert_int_equal(ctl_policy_add_params(&sel, "allow", &params), 0);
        assert_string_equal(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN),
                            "{\"rule\":{\"action\":\"allow\",\"user\":\"alice\",\"uid\":1000,\"group\":\"staff\","
                            "\"gid\":50,\"path\":\"\\/usr\\/bin\\/app\",\"sha256\":\"" ABC_SHA256 "\","
                            "\"endpoint\":\"data\",\"cert\":\"backup-1\",\"comment\":\"app \\\"for\\\" alice\"}}");

        /* Every key secctl sends is a field of io.secd.Policy's Rule type, and never "id". */
        rule_type = strstr(iface, "type Rule (");
        assert_non_null(rule_type);
        assert_true(json_object_object_get_ex(params, "rule", &rule));
        assert_false(json_object_object_get_ex(rule, "id", NULL));
        json_object_object_foreach(rule, key, val) {
                char needle[64];

                (void) val;
                snprintf(needle, sizeof needle, "\n  %s: ", key);
                if (!strstr(rule_type, needle))
                        fail_msg("Rule field '%s' is not in io.secd.Policy.varlink", key);
        }
        assert_non_null(strstr(iface, "method Add(rule: Rule)"));
        json_object_put(params);

        /* Only what was given. */
        CtlSelectors minimal = { .uid = 0, .has_uid = true };
        assert_int_equal(ctl_policy_add_params(&minimal, "deny", &params), 0);
        assert_string_equal(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN),
                            "{\"rule\":{\"action\":\"deny\",\"uid\":0}}");
        json_object_put(params);

        /* Policy.Test: uid required, then gid/path/sha256/endpoint as given. */
        CtlSelectors test = { .uid = 1000, .has_uid = true, .sha256 = ABC_SHA256, .endpoint = "enroll",
                              .cert = "host.example" };
        assert_int_equal(ctl_policy_test_params(&test, 0, &params), 0);
        assert_string_equal(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN),
                            "{\"uid\":1000,\"sha256\":\"" ABC_SHA256 "\",\"endpoint\":\"enroll\",\"cert\":\"host.example\"}");
        assert_non_null(strstr(iface, "\n  cert: ?string\n) -> ("));
        assert_non_null(strstr(iface, "method Test(\n  uid: int,"));
        json_object_put(params);
        /* A uid without passwd entry: the given group only, no supplementary groups from NSS. */
        CtlSelectors nopasswd = { .uid = 4343, .has_uid = true, .gid = 4343, .has_gid = true,
                                  .no_supplementary = true };
        assert_int_equal(ctl_policy_test_params(&nopasswd, 0, &params), 0);
        assert_string_equal(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN),
                            "{\"uid\":4343,\"gid\":4343,\"gids\":[]}");
        assert_non_null(strstr(iface, "  gids: ?[]int,"));
        json_object_put(params);
        CtlSelectors nouid = {};
        assert_int_equal(ctl_policy_test_params(&nouid, 0, &params), -EINVAL);
}

static char *table_to_string(const CtlTable *t, bool legend) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(ctl_table_print(t, f, legend), 0);
        fclose(f);
        return buf;
}

static void test_table(void **state) {
        CtlTable *t = NULL;
        char *s;

        assert_int_equal(ctl_table_new(3, (const char *const[]) { "ID", "NAME", "NOTE" }, &t), 0);
        assert_int_equal(ctl_table_add_row(t, (const char *const[]) { "1", "alpha", "x" }), 0);
        assert_int_equal(ctl_table_add_row(t, (const char *const[]) { "12", "", NULL }), 0);
        assert_int_equal(ctl_table_add_row(t, (const char *const[]) { "3", "ab…", "line\nbreak" }), 0);
        assert_int_equal(ctl_table_rows(t), 3);

        s = table_to_string(t, true);
        assert_string_equal(s,
                            "ID  NAME   NOTE\n"
                            "1   alpha  x\n"
                            "12  -      -\n"
                            "3   ab…    line?break\n");
        free(s);
        s = table_to_string(t, false);
        assert_string_equal(s,
                            "1   alpha  x\n"
                            "12  -      -\n"
                            "3   ab…    line?break\n");
        free(s);
        ctl_table_free(t);

        /* Many rows (growth). */
        assert_int_equal(ctl_table_new(1, (const char *const[]) { "N" }, &t), 0);
        for (int i = 0; i < 100; i++)
                assert_int_equal(ctl_table_add_row(t, (const char *const[]) { "row" }), 0);
        assert_int_equal(ctl_table_rows(t), 100);
        ctl_table_free(t);

        assert_int_equal(ctl_utf8_width("…"), 1);
        assert_int_equal(ctl_utf8_width("abc"), 3);
        assert_null(ctl_table_free(NULL));
}

static void test_rules_table(void **state) {
        json_object *reply = json_tokener_parse(
                "{\"mode\":\"enforce\",\"generation\":4,\"rules\":["
                "{\"id\":1,\"action\":\"allow\",\"user\":\"alice\",\"uid\":1000,\"sha256\":\"" ABC_SHA256 "\","
                "\"comment\":\"app for alice\"},"
                "{\"id\":12,\"action\":\"deny\",\"gid\":50,\"path\":\"/usr/bin/x\",\"endpoint\":\"tcp\","
                "\"cert\":\"backup-1\"}]}");
        json_object *rules;
        CtlTable *t = NULL;
        char *s;

        assert_non_null(reply);
        assert_true(json_object_object_get_ex(reply, "rules", &rules));
        assert_int_equal(ctl_policy_rules_table(rules, false, &t), 0);
        s = table_to_string(t, true);
        assert_string_equal(s,
                            "ID  ACTION  USER/UID     GROUP/GID  PATH        SHA256         ENDPOINT  CERT      COMMENT\n"
                            "1   allow   alice(1000)  -          -           ba7816bf8f01…  -         -         app for alice\n"
                            "12  deny    -            50         /usr/bin/x  -              tcp       backup-1  -\n");
        free(s);
        ctl_table_free(t);

        assert_int_equal(ctl_policy_rules_table(rules, true, &t), 0);
        s = table_to_string(t, false);
        assert_non_null(strstr(s, ABC_SHA256));
        free(s);
        ctl_table_free(t);

        /* A malformed reply is refused, not printed half. */
        json_object *bad = json_tokener_parse("[{\"id\":\"1\",\"action\":\"allow\"}]");
        assert_int_equal(ctl_policy_rules_table(bad, false, &t), -EBADMSG);
        json_object_put(bad);
        bad = json_tokener_parse("[{\"id\":1}]");
        assert_int_equal(ctl_policy_rules_table(bad, false, &t), -EBADMSG);
        json_object_put(bad);
        json_object_put(reply);
}

static void test_rule_describe(void **state) {
        json_object *rule = json_tokener_parse(
                "{\"id\":3,\"action\":\"allow\",\"user\":\"alice\",\"uid\":1000,\"gid\":5,"
                "\"sha256\":\"" ABC_SHA256 "\",\"cert\":\"host-1\",\"comment\":\"say \\\"hi\\\"\"}");
        char *s = NULL;

        assert_int_equal(ctl_policy_rule_describe(rule, &s), 0);
        assert_string_equal(s, "3 allow user=alice uid=1000 gid=5 sha256=" ABC_SHA256 " cert=host-1 comment=\"say \\\"hi\\\"\"");
        free(s);
        json_object_put(rule);
}

static void test_status_audit_format(void **state) {
        json_object *status = json_tokener_parse(
                "{\"version\":\"0.1.0\",\"uptime_usec\":3723000000,\"mode\":\"enforce\",\"generation\":4,"
                "\"rules\":2,\"connections\":{\"data\":1,\"tcp\":0,\"enroll\":2,\"control\":1},"
                "\"decisions\":{\"allowed\":10,\"denied\":3,\"permissive\":0},"
                "\"hash_cache\":{\"hits\":7,\"misses\":3,\"evictions\":0,\"too_large\":1,\"entries\":3,"
                "\"capacity\":1024}}");
        json_object *entry = json_tokener_parse(
                "{\"id\":1,\"time_usec\":1700000000123456,\"kind\":\"decision\",\"message\":\"deny uid 1000\\nx\","
                "\"fields\":null}");
        char *buf = NULL;
        size_t len = 0;
        FILE *f;
        char d[64];

        setenv("TZ", "UTC", 1);
        tzset();
        f = open_memstream(&buf, &len);
        assert_int_equal(ctl_status_print(f, status), 0);
        assert_int_equal(ctl_audit_print_entry(f, entry), 0);
        fclose(f);
        assert_string_equal(buf,
                            "version: 0.1.0\n"
                            "uptime: 1h 2min 3s\n"
                            "mode: enforce\n"
                            "generation: 4\n"
                            "rules: 2\n"
                            "connections: data 1, tcp 0, enroll 2, control 1\n"
                            "decisions: allowed 10, denied 3, permissive 0\n"
                            "hash-cache: entries 3/1024, hits 7, misses 3, evictions 0, too-large 1\n"
                            "2023-11-14T22:13:20+00:00 decision deny uid 1000?x\n");
        free(buf);

        ctl_format_duration(0, d, sizeof d);
        assert_string_equal(d, "0s");
        ctl_format_duration(UINT64_C(90061000000), d, sizeof d);
        assert_string_equal(d, "1d 1h 1min 1s");

        /* secd with the mTLS endpoints also reports TLS and hashing-pool counters. */
        json_object_object_add(status, "tls", json_tokener_parse(
                "{\"handshakes\":5,\"resumed\":2,\"handshake_failures\":1,\"handshake_timeouts\":0,\"refused\":3,"
                "\"uid_limit\":4}"));
        json_object_object_add(status, "hash_pool", json_tokener_parse(
                "{\"queued\":0,\"submitted\":4,\"completed\":4,\"rejected_busy\":0,\"rejected_uid\":1,"
                "\"rejected_budget\":2,\"coalesced\":6}"));
        f = open_memstream(&buf, &len);
        assert_int_equal(ctl_status_print(f, status), 0);
        fclose(f);
        assert_non_null(strstr(buf, "hash-cache: entries 3/1024, hits 7, misses 3, evictions 0, too-large 1\n"
                                    "tls: handshakes 5 (resumed 2), failed 1, timed out 0, refused 3, over the per-uid session limit 4\n"
                                    "hash-pool: queued 0, hashed 4, shared 6, busy 0, per-uid limit 1, per-uid budget 2\n"));
        free(buf);
        json_object_object_del(status, "tls");
        json_object_object_del(status, "hash_pool");

        /* Missing counters are a malformed reply. */
        json_object_object_del(status, "hash_cache");
        f = open_memstream(&buf, &len);
        assert_int_equal(ctl_status_print(f, status), -EBADMSG);
        fclose(f);
        free(buf);
        json_object_put(status);
        json_object_put(entry);
}

static void test_hash(void **state) {
        char dir[] = "/tmp/test-secctl-hash-XXXXXX", path[128], odd[128], exp[512];
        char hex[SHA256_HEX_LEN + 1];
        RunResult r;
        int fd;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/abc", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "abc", 3), 3);
        close(fd);
        snprintf(odd, sizeof odd, "%s/a\\b\nc", dir);
        assert_int_equal(link(path, odd), 0);

        assert_int_equal(ctl_hash_file(path, hex), 0);
        assert_string_equal(hex, ABC_SHA256);
        assert_int_equal(ctl_hash_file(dir, hex), -EISDIR);
        assert_int_equal(ctl_hash_file("/nonexistent/x", hex), -ENOENT);
        assert_int_equal(ctl_hash_file("/dev/null", hex), -EBADFD);

        /* Exactly sha256sum's output, including its escaping of odd names. */
        r = RUN("hash", path, odd);
        assert_int_equal(r.status, 0);
        assert_string_equal(r.err, "");
        snprintf(exp, sizeof exp, ABC_SHA256 "  %s\n\\" ABC_SHA256 "  %s/a\\\\b\\nc\n", path, dir);
        assert_string_equal(r.out, exp);
        run_result_done(&r);

        /* An unreadable file: a message, the others still hashed, exit non-zero. */
        r = RUN("hash", "/nonexistent/x", path, dir);
        assert_int_equal(r.status, CTL_EXIT_FAILURE);
        snprintf(exp, sizeof exp, ABC_SHA256 "  %s\n", path);
        assert_string_equal(r.out, exp);
        assert_contains(r.err, "secctl: /nonexistent/x: No such file or directory\n");
        snprintf(exp, sizeof exp, "secctl: %s: Is a directory\n", dir);
        assert_contains(r.err, exp);
        run_result_done(&r);

        r = RUN("--json", "hash", path);
        assert_int_equal(r.status, 0);
        snprintf(exp, sizeof exp, "[\n  {\n    \"path\": \"%s\",\n    \"sha256\": \"" ABC_SHA256 "\"\n  }\n]\n", path);
        assert_string_equal(r.out, exp);
        run_result_done(&r);

        /* --binary records the absolute path and the hash. */
        CtlSelectors sel = { .binary = path };
        assert_int_equal(ctl_selectors_resolve_binary(&sel), 0);
        assert_string_equal(sel.sha256, ABC_SHA256);
        assert_string_equal(sel.path, path);
        free(sel.binary_path);

        unlink(odd);
        unlink(path);
        rmdir(dir);
}

static void test_paths_and_names(void **state) {
        assert_int_equal(ctl_validate_path("/"), 0);
        assert_int_equal(ctl_validate_path("/usr/bin/app"), 0);
        assert_int_equal(ctl_validate_path("/usr/bin/.hidden"), 0);
        assert_int_equal(ctl_validate_path("relative"), -EINVAL);
        assert_int_equal(ctl_validate_path("/a/./b"), -EINVAL);
        assert_int_equal(ctl_validate_path("/a/.."), -EINVAL);
        assert_int_equal(ctl_validate_path("//a"), -EINVAL);
        assert_int_equal(ctl_validate_path(NULL), -EINVAL);

        char *long_path = malloc(CTL_PATH_MAX + 2);
        long_path[0] = '/';
        memset(long_path + 1, 'a', CTL_PATH_MAX);
        long_path[CTL_PATH_MAX + 1] = '\0';
        assert_int_equal(ctl_validate_path(long_path), -ENAMETOOLONG);
        long_path[CTL_PATH_MAX] = '\0';
        assert_int_equal(ctl_validate_path(long_path), 0);
        free(long_path);

        assert_int_equal(ctl_validate_name("alice"), 0);
        assert_int_equal(ctl_validate_name("-rf"), -EINVAL);
        assert_true(ctl_endpoint_valid("control"));
        assert_true(ctl_cert_name_valid("backup-1.example_A"));
        assert_false(ctl_cert_name_valid("a b"));
        assert_false(ctl_cert_name_valid(""));
        assert_false(ctl_cert_name_valid(NULL));
        assert_false(ctl_endpoint_valid("Data"));
        assert_false(ctl_endpoint_valid(NULL));
}

/* secctl(8) and the bash completion know every verb and option of the tables. */
static void test_man_page_and_completion(void **state) {
        _cleanup_free_ char *man = read_file(SECCTL_MAN_PAGE);
        _cleanup_free_ char *completion = read_file(SECCTL_BASH_COMPLETION);
        char needle[128];

        for (size_t i = 0; i < ctl_verbs_count; i++) {
                const CtlVerb *v = &ctl_verbs[i];

                if (v->sub)
                        snprintf(needle, sizeof needle, ".SS \"%s %s", v->name, v->sub);
                else
                        snprintf(needle, sizeof needle, ".SS \"%s", v->name);
                if (!strstr(man, needle))
                        fail_msg("secctl.8 lacks a section for verb '%s %s'", v->name, v->sub ?: "");
                if (!strstr(completion, v->sub ?: v->name))
                        fail_msg("the bash completion lacks verb '%s'", v->sub ?: v->name);
        }
        for (size_t i = 0; i < ctl_options_count; i++) {
                /* roff spells every '-' as "\-". */
                size_t k = (size_t) snprintf(needle, sizeof needle, "\\-\\-");
                for (const char *p = ctl_options[i].name; *p && k + 3 < sizeof needle; p++) {
                        if (*p == '-')
                                needle[k++] = '\\';
                        needle[k++] = *p;
                }
                needle[k] = '\0';
                if (!strstr(man, needle))
                        fail_msg("secctl.8 lacks option --%s", ctl_options[i].name);
                snprintf(needle, sizeof needle, "--%s", ctl_options[i].name);
                if (!strstr(completion, needle))
                        fail_msg("the bash completion lacks option --%s", ctl_options[i].name);
        }
        for (int code = CTL_EXIT_SUCCESS; code <= CTL_EXIT_PERMISSION; code++) {
                snprintf(needle, sizeof needle, ".IP %d\n", code);
                if (!strstr(man, needle))
                        fail_msg("secctl.8 does not document exit status %d", code);
        }
        assert_non_null(strstr(man, "SECCTL_SOCKET"));
}

static void test_cert_arguments(void **state) {
        char dir[] = "/tmp/test-secctl-cert-XXXXXX";
        char path[256];
        struct stat st;
        RunResult r;
        json_object *params = NULL;
        uint64_t usec = 0;
        int fd;

        assert_non_null(mkdtemp(dir));

        /* Checked before secd is contacted. */
        expect_usage(RUN("--socket", NO_SOCKET, "cert", "issue", "a/b", "--out", dir), "Invalid certificate name 'a/b'");
        expect_usage(RUN("--socket", NO_SOCKET, "cert", "issue", "..x y", "--out", dir), "Invalid certificate name");
        expect_usage(RUN("--socket", NO_SOCKET, "cert", "issue",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--out", dir),
                     "Invalid certificate name");
        expect_usage(RUN("--socket", NO_SOCKET, "cert", "issue", "host1"), "'cert issue' needs --out DIR");
        expect_usage(RUN("cert", "issue", "--out", dir), "'cert issue' needs 1 argument");
        expect_usage(RUN("cert", "issue", "a", "b", "--out", dir), "takes at most 1 argument");
        expect_usage(RUN("cert", "issue", "host1", "--out", dir, "--valid", "826d"), "Invalid --valid '826d'");
        expect_usage(RUN("cert", "issue", "host1", "--out", dir, "--valid", "0"), "Invalid --valid '0'");
        expect_usage(RUN("cert", "issue", "host1", "--out", dir, "--valid", "soon"), "Invalid --valid 'soon'");
        expect_usage(RUN("cert", "issue", "host1", "--out", dir, "--valid", ""), "Invalid --valid");
        expect_usage(RUN("cert", "issue", "host1", "--out", ""), "Invalid --out");
        expect_usage(RUN("--socket", NO_SOCKET, "cert", "issue", "host1", "--out", "/nonexistent-secctl-test"),
                     "Cannot open --out /nonexistent-secctl-test");
        expect_usage(RUN("cert", "list", "--out", dir), "Option --out does not apply to 'cert list'");
        expect_usage(RUN("cert", "issue", "host1", "--out", dir, "--all"), "Option --all does not apply");
        expect_usage(RUN("cert", "revoke"), "'cert revoke' needs 1 argument");
        expect_usage(RUN("cert", "revoke", "a b"), "Invalid argument 'a b'");
        expect_usage(RUN("cert", "revoke", "secd://remote/x"), "Invalid argument");
        expect_usage(RUN("cert", "crl", "x"), "'cert crl' takes no arguments");
        expect_usage(RUN("ca", "show", "x"), "'ca show' takes no arguments");
        expect_usage(RUN("ca"), "'ca' needs a verb: show");
        expect_usage(RUN("cert", "frob"), "Unknown verb 'cert frob'");

        /* Unreachable secd: exit 4, and nothing is left behind in DIR. */
        r = RUN("--socket", NO_SOCKET, "cert", "issue", "host1", "--out", dir);
        assert_int_equal(r.status, CTL_EXIT_UNREACHABLE);
        run_result_done(&r);
        snprintf(path, sizeof path, "%s/host1.key", dir);
        assert_int_equal(lstat(path, &st), -1);
        snprintf(path, sizeof path, "%s/host1.crt", dir);
        assert_int_equal(lstat(path, &st), -1);

        /* An existing key (or a symlink in its place) is never overwritten: exit 1, file as it was. */
        snprintf(path, sizeof path, "%s/host1.key", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "old", 3), 3);
        close(fd);
        r = RUN("--socket", NO_SOCKET, "cert", "issue", "host1", "--out", dir);
        assert_int_equal(r.status, CTL_EXIT_FAILURE);
        assert_contains(r.err, "Refusing to overwrite");
        run_result_done(&r);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 3);
        assert_int_equal(st.st_mode & 07777, 0640);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(symlink("/nonexistent-secctl-target", path), 0);
        r = RUN("--socket", NO_SOCKET, "cert", "issue", "host1", "--out", dir);
        assert_int_equal(r.status, CTL_EXIT_FAILURE);
        run_result_done(&r);
        assert_int_equal(lstat("/nonexistent-secctl-target", &st), -1);
        assert_int_equal(unlink(path), 0);
        /* An existing certificate file: refused too, the key file made for this run is removed again. */
        snprintf(path, sizeof path, "%s/host1.crt", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        r = RUN("--socket", NO_SOCKET, "cert", "issue", "host1", "--out", dir);
        assert_int_equal(r.status, CTL_EXIT_FAILURE);
        run_result_done(&r);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof path, "%s/host1.key", dir);
        assert_int_equal(lstat(path, &st), -1);
        assert_int_equal(rmdir(dir), 0);

        /* Durations. */
        assert_int_equal(ctl_cert_parse_validity("30d", &usec), 0);
        assert_int_equal(usec, UINT64_C(30) * 24 * 3600 * 1000000);
        assert_int_equal(ctl_cert_parse_validity("825d", &usec), 0);
        assert_int_equal(ctl_cert_parse_validity("1s", &usec), 0);
        assert_int_equal(ctl_cert_parse_validity("1d12h", &usec), 0);
        assert_int_equal(usec, UINT64_C(36) * 3600 * 1000000);
        assert_true(ctl_cert_parse_validity("826d", &usec) < 0);
        assert_true(ctl_cert_parse_validity("0", &usec) < 0);
        assert_true(ctl_cert_parse_validity("-1d", &usec) < 0);
        assert_true(ctl_cert_parse_validity(NULL, &usec) < 0);

        /* Revoke: 32 hex characters are a serial (lower-cased), anything else a name. */
        assert_int_equal(ctl_cert_revoke_params("0123456789ABCDEF0123456789abcdef", &params), 0);
        assert_string_equal(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN),
                            "{\"serial\":\"0123456789abcdef0123456789abcdef\"}");
        json_object_put(params);
        assert_int_equal(ctl_cert_revoke_params("backup-1", &params), 0);
        assert_string_equal(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN), "{\"name\":\"backup-1\"}");
        json_object_put(params);
        /* 31 hex characters: a name. */
        assert_int_equal(ctl_cert_revoke_params("0123456789abcdef0123456789abcde", &params), 0);
        assert_non_null(strstr(json_object_to_json_string(params), "\"name\""));
        json_object_put(params);
        assert_int_equal(ctl_cert_revoke_params("a/b", &params), -EINVAL);
        assert_true(ctl_cert_serial_valid("0123456789abcdef0123456789ABCDEF"));
        assert_false(ctl_cert_serial_valid("0123456789abcdef0123456789abcdeg"));
        assert_false(ctl_cert_serial_valid(NULL));
}

static void test_certs_table(void **state) {
        json_object *reply = json_tokener_parse(
                "{\"certificates\":["
                "{\"serial\":\"00112233445566778899aabbccddeeff\",\"kind\":\"remote\",\"name\":\"backup-1\","
                "\"not_before\":\"2026-01-01T00:00:00Z\",\"not_after\":\"2026-01-31T00:00:00Z\",\"revoked\":true,"
                "\"revoked_at\":\"2026-01-02T00:00:00Z\"},"
                "{\"serial\":\"ffeeddccbbaa99887766554433221100\",\"kind\":\"local\",\"uid\":1000,"
                "\"sha256\":\"" ABC_SHA256 "\",\"not_before\":\"2026-01-01T00:00:00Z\","
                "\"not_after\":\"2026-01-01T01:00:00Z\",\"revoked\":false}]}");
        json_object *certs;
        CtlTable *t = NULL;
        char *s;

        assert_non_null(reply);
        assert_true(json_object_object_get_ex(reply, "certificates", &certs));
        assert_int_equal(ctl_certs_table(certs, &t), 0);
        s = table_to_string(t, true);
        assert_string_equal(s,
                            "SERIAL                            KIND    HOLDER                         NOT-AFTER             STATE\n"
                            "00112233445566778899aabbccddeeff  remote  backup-1                       2026-01-31T00:00:00Z  revoked 2026-01-02T00:00:00Z\n"
                            "ffeeddccbbaa99887766554433221100  local   uid 1000 sha256 ba7816bf8f01…  2026-01-01T01:00:00Z  valid\n");
        free(s);
        ctl_table_free(t);

        json_object *bad = json_tokener_parse("[{\"serial\":\"x\",\"kind\":\"remote\"}]");
        assert_int_equal(ctl_certs_table(bad, &t), -EBADMSG);
        json_object_put(bad);
        json_object_put(reply);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_verb_lookup),
                cmocka_unit_test(test_help_and_version),
                cmocka_unit_test(test_argument_counts),
                cmocka_unit_test(test_option_parsing),
                cmocka_unit_test(test_parse_success),
                cmocka_unit_test(test_unreachable),
                cmocka_unit_test(test_error_mapping),
                cmocka_unit_test(test_error_messages),
                cmocka_unit_test(test_add_params),
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_rules_table),
                cmocka_unit_test(test_rule_describe),
                cmocka_unit_test(test_status_audit_format),
                cmocka_unit_test(test_hash),
                cmocka_unit_test(test_paths_and_names),
                cmocka_unit_test(test_man_page_and_completion),
                cmocka_unit_test(test_cert_arguments),
                cmocka_unit_test(test_certs_table),
        };

        log_setup("secctl", LOG_TARGET_STDERR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
