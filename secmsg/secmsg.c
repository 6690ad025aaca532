/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * secmsg: the user CLI of secd's relay and key server, on libsecclient's
 * public API. One verb table (name, sub-verb, argument counts, options,
 * handler, help); --help is generated from it and secmsg(1) uses the same
 * words. The identity seed and the pre-keys' private parts live in the home
 * directory (0700, files 0600, written whole then renamed into place) and
 * are never printed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <nettle/curve25519.h>

#include "macro.h"
#include "secclient.h"
#include "strutil.h"

#define SECMSG_MESSAGE_MAX (16u * 1024u * 1024u) /* send: the frame hard cap; secd's own limit is lower */
#define SECMSG_SEND_ATTEMPTS 5u                  /* send: one try and four resends of the same message id */
#define SECMSG_RETRY_BASE_MS 200u
#define SECMSG_WAIT_MAX 86400u                   /* recv --wait, seconds */
#define SECMSG_PREKEYS_FILE_MAX (256u * 1024u)
#define SECMSG_OTK_KEEP 1000u                    /* one-time private keys kept for late initial messages */
#define SECMSG_SPK_KEEP 3u                       /* signed pre-keys kept (the newest is published) */
#define SECMSG_PATH_MAX 4096u
#define ADDRESS_HEX_LEN (2 * SECCLIENT_KEY_SIZE)

#define IDENTITY_FILE "identity"
#define IDENTITY_DH_FILE "identity-dh"
#define PREKEYS_FILE "prekeys"

typedef enum ExitStatus {
        EXIT_OK = 0,
        EXIT_FAIL = 1,
        EXIT_USAGE = 2,
        EXIT_REFUSED = 3,       /* secd refused: policy, certificate, not the mailbox's owner */
        EXIT_UNREACHABLE = 4,   /* no secd at the socket */
        EXIT_NOT_FOUND = 5,     /* no such mailbox, or it published no keys */
        EXIT_TRY_LATER = 6,     /* rate limited, quota exceeded, mailbox busy */
} ExitStatus;

static const struct {
        ExitStatus code;
        const char *help;
} exit_statuses[] = {
        { EXIT_OK,          "success" },
        { EXIT_FAIL,        "failure (the message says why)" },
        { EXIT_USAGE,       "invalid usage or argument" },
        { EXIT_REFUSED,     "refused by secd: policy, certificate, or not the mailbox's owner" },
        { EXIT_UNREACHABLE, "cannot reach secd (not running, wrong socket)" },
        { EXIT_NOT_FOUND,   "no such mailbox, or it has published no keys" },
        { EXIT_TRY_LATER,   "try later: rate limited, mailbox full, or another recv is running" },
};

typedef enum OptionId {
        OPT_HELP = 'h',
        OPT_VERSION = 0x100,
        OPT_SOCKET,
        OPT_ENROLL_SOCKET,
        OPT_HOME,
        OPT_TO,
        OPT_WAIT,
        OPT_MAX,
        OPT_COUNT,
        OPT_JSON,
} OptionId;

#define OPTBIT(id) (1u << ((id) - OPT_VERSION))

typedef struct Context {
        const char *socket;
        const char *enroll_socket;
        const char *home;
        const char *to;
        uint32_t wait_s;
        uint64_t max;           /* 0: no limit */
        uint32_t count;
        bool json;
        unsigned used;          /* OPTBIT()s given */
        char **args;
        int n_args;
        int home_fd;
} Context;

typedef int (*VerbHandler)(Context *ctx);

typedef struct Verb {
        const char *name;
        const char *sub;
        int min_args, max_args;
        unsigned options;       /* OPTBIT()s allowed besides the global ones */
        VerbHandler handler;
        const char *synopsis;
        const char *help;
} Verb;

static int verb_id(Context *ctx);
static int verb_send(Context *ctx);
static int verb_recv(Context *ctx);
static int verb_keys_publish(Context *ctx);
static int verb_keys_count(Context *ctx);
static int verb_keys_bundle(Context *ctx);

static const Verb verbs[] = {
        { "id",   NULL,      0, 0, 0,                              verb_id,
          "", "Print this identity's mailbox address, creating the identity on first use" },
        { "send", NULL,      0, 1, OPTBIT(OPT_TO),                 verb_send,
          "--to ADDRESS [FILE]", "Send FILE (default standard input) as one message; exit 0 once it is stored" },
        { "recv", NULL,      0, 0, OPTBIT(OPT_WAIT) | OPTBIT(OPT_MAX), verb_recv,
          "[--wait SECONDS] [--max N]", "Write pending messages to standard output, then acknowledge them" },
        { "keys", "publish", 0, 0, OPTBIT(OPT_COUNT),              verb_keys_publish,
          "[--count N]", "Publish a new signed pre-key and N one-time pre-keys (default 100)" },
        { "keys", "count",   0, 0, 0,                              verb_keys_count,
          "", "Print how many of this mailbox's one-time pre-keys secd still holds" },
        { "keys", "bundle",  1, 1, OPTBIT(OPT_JSON),               verb_keys_bundle,
          "ADDRESS [--json]", "Fetch and verify ADDRESS's key bundle (takes one one-time pre-key)" },
};

static const struct {
        struct option opt;
        const char *metavar;
        const char *help;
} options[] = {
        { { "help",          no_argument,       NULL, OPT_HELP },          NULL,      "Show this help and exit" },
        { { "version",       no_argument,       NULL, OPT_VERSION },       NULL,      "Show the version and exit" },
        { { "socket",        required_argument, NULL, OPT_SOCKET },        "PATH",    "secd's data socket (default $SECD_SOCKET, then " SECCLIENT_SOCKET_DEFAULT ")" },
        { { "enroll-socket", required_argument, NULL, OPT_ENROLL_SOCKET }, "PATH",    "secd's enroll socket (default $SECD_ENROLL_SOCKET, then " SECCLIENT_ENROLL_SOCKET_DEFAULT ")" },
        { { "home",          required_argument, NULL, OPT_HOME },          "DIR",     "Keys directory (default $SECMSG_HOME, then $XDG_DATA_HOME/secmsg, then ~/.local/share/secmsg)" },
        { { "to",            required_argument, NULL, OPT_TO },            "ADDRESS", "send: the recipient's mailbox address (64 lower-case hex characters)" },
        { { "wait",          required_argument, NULL, OPT_WAIT },          "SECONDS", "recv: wait up to SECONDS for a message to arrive (default 0, at most 86400)" },
        { { "max",           required_argument, NULL, OPT_MAX },           "N",       "recv: stop after N messages (default: no limit)" },
        { { "count",         required_argument, NULL, OPT_COUNT },         "N",       "keys publish: one-time pre-keys to publish, 0-100 (default 100)" },
        { { "json",          no_argument,       NULL, OPT_JSON },          NULL,      "keys bundle: print a JSON object" },
};

/* ---------------------------------------------------------------------- */
/* Messages */

static void error_msg(const char *fmt, ...) _printf_(1, 2);
static void error_msg(const char *fmt, ...) {
        va_list ap;

        fputs("secmsg: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("secmsg: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'secmsg --help'.\n", stderr);
        return EXIT_USAGE;
}

static ExitStatus exit_status_of(int r) {
        switch (r) {
        case -EACCES: case -EPERM: case -EKEYREVOKED: case -EKEYEXPIRED: case -EKEYREJECTED:
                return EXIT_REFUSED;
        case -ENOENT: case -ECONNREFUSED:
                return EXIT_UNREACHABLE;
        case -ENXIO: case -ENODATA:
                return EXIT_NOT_FOUND;
        case -EAGAIN: case -EDQUOT: case -EBUSY:
                return EXIT_TRY_LATER;
        default:
                return EXIT_FAIL;
        }
}

/* "what: strerror (secd's or the library's note)" and the matching exit status. */
static int secd_error(secclient *c, int r, const char *what) {
        const char *note = c ? secclient_last_error(c) : NULL;

        if (!isempty(note))
                error_msg("%s: %s (%s)", what, secclient_strerror(r), note);
        else
                error_msg("%s: %s", what, secclient_strerror(r));
        return exit_status_of(r);
}

/* ---------------------------------------------------------------------- */
/* The home directory and its files */

static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return negative_errno();
                *s = '/';
        }
        return 0;
}

static int home_path(const Context *ctx, char **ret) {
        const char *e;
        char *p = NULL;

        if (ctx->home)
                p = strdup(ctx->home);
        else if (!isempty(e = getenv("SECMSG_HOME")))
                p = strdup(e);
        else if (!isempty(e = getenv("XDG_DATA_HOME")) && e[0] == '/') {
                if (asprintf(&p, "%s/secmsg", e) < 0)
                        p = NULL;
        } else if (!isempty(e = getenv("HOME")) && e[0] == '/') {
                if (asprintf(&p, "%s/.local/share/secmsg", e) < 0)
                        p = NULL;
        } else {
                error_msg("no home directory: set --home, SECMSG_HOME, XDG_DATA_HOME or HOME");
                return -ENOENT;
        }
        if (!p)
                return -ENOMEM;
        if (strlen(p) > SECMSG_PATH_MAX) {
                free(p);
                return -ENAMETOOLONG;
        }
        *ret = p;
        return 0;
}

/* Temporary files older than this are leftovers of a secmsg that died between writing and renaming. */
#define SECMSG_TMP_STALE_SEC (10 * 60)

/*
 * A secmsg killed between creating a temporary file and renaming it into
 * place leaves a copy of a secret (the seed, pre-key private keys): delete
 * such files, but only old ones, since a young one may be another running
 * secmsg's, about to be renamed.
 */
static void home_sweep_temporary(Context *ctx) {
        _cleanup_close_ int dfd = -EBADF;
        struct dirent *de;
        time_t now = time(NULL);
        DIR *d;

        dfd = openat(ctx->home_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return;
        d = fdopendir(dfd);
        if (!d)
                return;
        TAKE_FD(dfd);
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                struct stat st;

                if (de->d_name[0] != '.' || l < 5 || !streq(de->d_name + l - 4, ".tmp"))
                        continue;
                if (fstatat(ctx->home_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
                    st.st_uid != geteuid() || now - st.st_mtime < SECMSG_TMP_STALE_SEC)
                        continue;
                (void) unlinkat(ctx->home_fd, de->d_name, 0);
        }
        (void) closedir(d);
}

/* Open (creating it 0700) the home; refuse one that others could read or that is not ours. */
static int home_open(Context *ctx) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        if (ctx->home_fd >= 0)
                return 0;
        r = home_path(ctx, &path);
        if (r == -ENAMETOOLONG)
                error_msg("the home directory's path is longer than %u bytes", SECMSG_PATH_MAX);
        if (r < 0)
                return r;

        if (mkdir(path, 0700) < 0) {
                if (errno == ENOENT) {
                        r = mkdir_parents(path);
                        if (r < 0 || (mkdir(path, 0700) < 0 && errno != EEXIST)) {
                                r = r < 0 ? r : negative_errno();
                                error_msg("cannot create the home directory %s: %s", path, strerror(-r));
                                return r;
                        }
                } else if (errno != EEXIST) {
                        r = negative_errno();
                        error_msg("cannot create the home directory %s: %s", path, strerror(-r));
                        return r;
                }
        }
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                r = negative_errno();
                error_msg("cannot open the home directory %s: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
                error_msg("the home directory %s must be owned by you and private (chmod 700): it holds your keys",
                          path);
                return -EPERM;
        }
        ctx->home_fd = TAKE_FD(fd);
        home_sweep_temporary(ctx);
        return 0;
}

/*
 * Read a private file of the home: regular, ours, 0600 or stricter, at most
 * max bytes; *ret is NUL-terminated after *ret_len bytes.
 */
static int home_read(Context *ctx, const char *name, size_t max, uint8_t **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        uint8_t *buf = NULL;
        struct stat st;
        size_t n = 0;
        int r;

        /* O_NONBLOCK: a FIFO planted under this name must not hang us before the S_ISREG check. */
        fd = openat(ctx->home_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
                r = negative_errno();
                /* A missing file is the caller's business (it may create one); anything else is refused here. */
                if (r == -ELOOP)
                        error_msg("%s in the home directory is a symbolic link: refusing to follow it", name);
                else if (r != -ENOENT)
                        error_msg("cannot open %s in the home directory: %s", name, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = negative_errno();
                error_msg("cannot stat %s in the home directory: %s", name, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
                error_msg("%s in the home directory must be a regular file owned by you, mode 0600", name);
                return -EPERM;
        }
        if (st.st_size < 0 || (uint64_t) st.st_size > max) {
                error_msg("%s in the home directory is larger than %zu bytes", name, max);
                return -EFBIG;
        }
        /* One more byte, always NUL: text files parse in place (no realloc leaving a copy behind). */
        buf = calloc(1, (size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (n < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + n, (size_t) st.st_size - n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? negative_errno() : -EIO;
                        error_msg("cannot read %s in the home directory: %s", name, strerror(-r));
                        explicit_bzero(buf, (size_t) st.st_size);
                        free(buf);
                        return r;
                }
                n += (size_t) k;
        }
        *ret = buf;
        *ret_len = n;
        return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/*
 * Write name in the home atomically: a new 0600 file (O_CREAT|O_EXCL|
 * O_NOFOLLOW) written whole and fsync'd, then renamed into place.
 * replace false: never overwrite (-EEXIST if name appeared meanwhile).
 */
static int home_write(Context *ctx, const char *name, const uint8_t *data, size_t len, bool replace) {
        char tmp[64];
        uint32_t rnd = 0;
        int fd, r;

        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                rnd = (uint32_t) getpid() ^ (uint32_t) time(NULL);
        r = snprintf(tmp, sizeof tmp, ".%s.%08" PRIx32 ".tmp", name, rnd);
        if (r < 0 || (size_t) r >= sizeof tmp)
                return -ENAMETOOLONG;

        fd = openat(ctx->home_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return negative_errno();
        r = write_all(fd, data, len);
        if (r >= 0 && fsync(fd) < 0)
                r = negative_errno();
        if (close(fd) < 0 && r >= 0)
                r = negative_errno();
        if (r >= 0) {
                if (replace)
                        r = renameat(ctx->home_fd, tmp, ctx->home_fd, name) < 0 ? negative_errno() : 0;
                else {
                        r = renameat2(ctx->home_fd, tmp, ctx->home_fd, name, RENAME_NOREPLACE) < 0 ? negative_errno() : 0;
                        /* No RENAME_NOREPLACE here (NFS, some FUSE, old kernels): a hard link never replaces either. */
                        if (r == -EINVAL || r == -ENOSYS) {
                                r = linkat(ctx->home_fd, tmp, ctx->home_fd, name, 0) < 0 ? negative_errno() : 0;
                                if (r >= 0)
                                        (void) unlinkat(ctx->home_fd, tmp, 0);
                        }
                }
        }
        if (r < 0) {
                (void) unlinkat(ctx->home_fd, tmp, 0);
                return r;
        }
        (void) fsync(ctx->home_fd);
        return 0;
}

/* A 32-byte secret file: read it, or create it with fresh random bytes (make) when missing. */
static int secret_load_or_create(Context *ctx, const char *name, int (*make)(uint8_t s[32], uint8_t p[32]),
                                 uint8_t ret[SECCLIENT_KEY_SIZE]) {
        uint8_t *buf = NULL, s[SECCLIENT_KEY_SIZE], pub[SECCLIENT_KEY_SIZE];
        size_t len = 0;
        int r;

        for (unsigned attempt = 0; attempt < 2; attempt++) {
                r = home_read(ctx, name, SECCLIENT_KEY_SIZE, &buf, &len);
                if (r >= 0) {
                        if (len != SECCLIENT_KEY_SIZE) {
                                explicit_bzero(buf, len);
                                free(buf);
                                error_msg("%s in the home directory is damaged (not %d bytes)", name,
                                          SECCLIENT_KEY_SIZE);
                                return -EBADMSG;
                        }
                        memcpy(ret, buf, SECCLIENT_KEY_SIZE);
                        explicit_bzero(buf, len);
                        free(buf);
                        return 0;
                }
                if (r != -ENOENT)
                        return r;

                r = make(s, pub);
                if (r >= 0)
                        r = home_write(ctx, name, s, sizeof s, false);
                if (r >= 0) {
                        memcpy(ret, s, sizeof s);
                        explicit_bzero(s, sizeof s);
                        return 0;
                }
                explicit_bzero(s, sizeof s);
                if (r != -EEXIST) {
                        error_msg("cannot create %s in the home directory: %s", name, strerror(-r));
                        return r;
                }
                /* Another secmsg created it first: use that one. */
        }
        return -EEXIST;
}

static int identity_load(Context *ctx, uint8_t seed[SECCLIENT_KEY_SIZE]) {
        int r = home_open(ctx);

        if (r < 0)
                return r;
        return secret_load_or_create(ctx, IDENTITY_FILE, secclient_identity_generate, seed);
}

/* ---------------------------------------------------------------------- */
/* Parsing */

/* A mailbox address: exactly 64 lower-case hex characters. */
static int address_parse(const char *s, uint8_t ret[SECCLIENT_KEY_SIZE]) {
        if (!s || strnlen(s, ADDRESS_HEX_LEN + 1) != ADDRESS_HEX_LEN)
                return -EINVAL;
        for (size_t i = 0; i < ADDRESS_HEX_LEN; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return -EINVAL;
        return hex_decode_exact(s, ret, SECCLIENT_KEY_SIZE);
}

static void print_hex_line(FILE *f, const char *name, const uint8_t *p, size_t n) {
        char hex[2 * 64 + 1];

        hex_encode(p, MIN(n, (size_t) 64), hex);
        fprintf(f, "%s %s\n", name, hex);
}

static int stdout_finish(void) {
        if (fflush(stdout) != 0 || ferror(stdout)) {
                error_msg("cannot write to standard output: %s", strerror(errno));
                return EXIT_FAIL;
        }
        return EXIT_OK;
}

/* ---------------------------------------------------------------------- */
/* Connection */

static int client_open(Context *ctx, secclient **ret) {
        secclient *c = NULL;
        int r;

        r = secclient_new(&c);
        if (r < 0) {
                error_msg("cannot set up the client: %s", secclient_strerror(r));
                return EXIT_FAIL;
        }
        if (ctx->socket && (r = secclient_set_endpoint(c, ctx->socket)) < 0) {
                secclient_free(c);
                return usage_error("invalid --socket '%s': %s", ctx->socket, secclient_strerror(r));
        }
        if (ctx->enroll_socket && (r = secclient_set_enroll_socket(c, ctx->enroll_socket)) < 0) {
                secclient_free(c);
                return usage_error("invalid --enroll-socket '%s': %s", ctx->enroll_socket, secclient_strerror(r));
        }
        r = secclient_connect(c);
        if (r < 0) {
                r = secd_error(c, r, "cannot connect to secd");
                secclient_free(c);
                return r;
        }
        *ret = c;
        return EXIT_OK;
}

/* Connect and register this identity's mailbox. */
static int client_open_registered(Context *ctx, secclient **ret) {
        uint8_t seed[SECCLIENT_KEY_SIZE];
        secclient *c = NULL;
        int r;

        r = identity_load(ctx, seed);
        if (r < 0)
                return EXIT_FAIL;
        r = client_open(ctx, &c);
        if (r != EXIT_OK) {
                explicit_bzero(seed, sizeof seed);
                return r;
        }
        r = secclient_register(c, seed, NULL);
        explicit_bzero(seed, sizeof seed);
        if (r < 0) {
                r = secd_error(c, r, "cannot register the mailbox");
                secclient_free(c);
                return r;
        }
        *ret = c;
        return EXIT_OK;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(secclient *, secclient_free);

/* ---------------------------------------------------------------------- */
/* Verbs */

static int verb_id(Context *ctx) {
        uint8_t seed[SECCLIENT_KEY_SIZE], pub[SECCLIENT_KEY_SIZE];
        char hex[ADDRESS_HEX_LEN + 1];
        int r;

        r = identity_load(ctx, seed);
        if (r < 0)
                return EXIT_FAIL;
        r = secclient_identity_public(seed, pub);
        explicit_bzero(seed, sizeof seed);
        if (r < 0)
                return EXIT_FAIL;
        hex_encode(pub, sizeof pub, hex);
        printf("%s\n", hex);
        return stdout_finish();
}

/* The message: FILE or standard input, at most SECMSG_MESSAGE_MAX bytes. */
static int message_read(const char *file, uint8_t **ret, size_t *ret_len) {
        _cleanup_close_ int fd_owned = -EBADF;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n = 0, cap = 0;
        int fd = STDIN_FILENO;

        if (file && !streq(file, "-")) {
                fd_owned = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd_owned < 0) {
                        error_msg("cannot open %s: %s", file, strerror(errno));
                        return EXIT_FAIL;
                }
                fd = fd_owned;
        }
        for (;;) {
                ssize_t k;

                if (n == cap) {
                        size_t ncap = cap == 0 ? 64 * 1024 : cap * 2;
                        uint8_t *p;

                        /* One byte over the cap tells "too large" from "exactly the cap". */
                        ncap = MIN(ncap, (size_t) SECMSG_MESSAGE_MAX + 1);
                        if (ncap == cap) {
                                error_msg("the message is larger than %u bytes", SECMSG_MESSAGE_MAX);
                                return EXIT_FAIL;
                        }
                        p = realloc(buf, ncap);
                        if (!p) {
                                error_msg("out of memory");
                                return EXIT_FAIL;
                        }
                        buf = p;
                        cap = ncap;
                }
                k = read(fd, buf + n, cap - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        error_msg("cannot read %s: %s", file && !streq(file, "-") ? file : "standard input",
                                  strerror(errno));
                        return EXIT_FAIL;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > SECMSG_MESSAGE_MAX) {
                        error_msg("the message is larger than %u bytes", SECMSG_MESSAGE_MAX);
                        return EXIT_FAIL;
                }
        }
        if (n == 0) {
                error_msg("the message is empty: nothing to send");
                return EXIT_FAIL;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = n;
        return EXIT_OK;
}

static bool transport_error(int r) {
        switch (r) {
        case -ECONNRESET: case -EPIPE: case -ETIMEDOUT: case -ENOTCONN: case -ESHUTDOWN:
        case -ECONNABORTED: case -ECONNREFUSED: case -ENOENT: case -EPROTO:
                return true;
        default:
                return false;
        }
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int verb_send(Context *ctx) {
        _cleanup_(secclient_freep) secclient *c = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        uint8_t to[SECCLIENT_KEY_SIZE], msg_id[SECCLIENT_MSG_ID_SIZE];
        uint64_t server_id = 0;
        int r, duplicate = 0;
        size_t len = 0;

        if (!ctx->to)
                return usage_error("send needs --to ADDRESS");
        if (address_parse(ctx->to, to) < 0)
                return usage_error("invalid --to '%s': expected a mailbox address of 64 lower-case hex characters",
                                   ctx->to);
        r = message_read(ctx->n_args > 0 ? ctx->args[0] : NULL, &data, &len);
        if (r != EXIT_OK)
                return r;
        /* One id for every attempt: secd stores the message once however often it arrives. */
        r = secclient_msg_id_generate(msg_id);
        if (r < 0) {
                error_msg("cannot make a message id: %s", secclient_strerror(r));
                return EXIT_FAIL;
        }

        r = client_open(ctx, &c);
        if (r != EXIT_OK)
                return r;
        for (unsigned attempt = 1;; attempt++) {
                r = secclient_relay_send(c, to, msg_id, data, len, &server_id, &duplicate);
                if (r >= 0 || !transport_error(r) || attempt >= SECMSG_SEND_ATTEMPTS)
                        break;
                error_msg("send failed (%s), retrying (%u of %u)", secclient_strerror(r), attempt + 1,
                          SECMSG_SEND_ATTEMPTS);
                sleep_ms(SECMSG_RETRY_BASE_MS << (attempt - 1));
                /* Reconnects if the library gave up on the connection; the resend uses the same id. */
                if (secclient_ping(c, NULL, 0) < 0)
                        (void) secclient_connect(c);
        }
        if (r < 0) {
                r = secd_error(c, r, "cannot send the message");
                if (r == EXIT_NOT_FOUND)
                        fputs("secmsg: a mailbox exists once its owner ran 'secmsg recv' or 'secmsg keys publish'.\n",
                              stderr);
                return r;
        }
        printf("%" PRIu64 "\n", server_id);
        return stdout_finish();
}

static int ack_all(secclient *c, const uint64_t *ids, size_t n) {
        for (size_t i = 0; i < n; i += SECCLIENT_FETCH_MAX) {
                int r = secclient_relay_ack(c, ids + i, MIN(n - i, (size_t) SECCLIENT_FETCH_MAX), NULL);

                if (r < 0)
                        return r;
        }
        return 0;
}

static uint64_t now_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static int verb_recv(Context *ctx) {
        _cleanup_(secclient_freep) secclient *c = NULL;
        uint64_t got = 0, idle_deadline;
        int r;

        r = client_open_registered(ctx, &c);
        if (r != EXIT_OK)
                return r;

        idle_deadline = now_ms() + (uint64_t) ctx->wait_s * 1000u;
        while (ctx->max == 0 || got < ctx->max) {
                _cleanup_free_ uint64_t *ids = NULL;
                secclient_message *m = NULL;
                uint64_t now = now_ms();
                unsigned want = SECCLIENT_FETCH_MAX;
                size_t n = 0;

                if (ctx->max > 0)
                        want = (unsigned) MIN(ctx->max - got, (uint64_t) SECCLIENT_FETCH_MAX);
                r = secclient_relay_fetch(c, want, 0, now < idle_deadline ? (unsigned) (idle_deadline - now) : 0,
                                          &m, &n);
                if (r < 0)
                        return secd_error(c, r, "cannot fetch messages");
                if (n == 0) {
                        /* secd caps one long poll: wait on until our own deadline, never spinning. */
                        if (now_ms() >= idle_deadline)
                                break;
                        if (now_ms() - now < 100)
                                sleep_ms(100);
                        continue;
                }

                ids = calloc(n, sizeof *ids);
                if (!ids) {
                        secclient_messages_free(m, n);
                        error_msg("out of memory");
                        return EXIT_FAIL;
                }
                for (size_t i = 0; i < n; i++) {
                        ids[i] = m[i].id;
                        if (fwrite(m[i].data, 1, m[i].len, stdout) != m[i].len)
                                break;
                }
                secclient_messages_free(m, n);
                /* Acknowledge only what reached standard output. */
                r = stdout_finish();
                if (r != EXIT_OK)
                        return r;
                r = ack_all(c, ids, n);
                if (r < 0)
                        return secd_error(c, r, "cannot acknowledge the messages written (the next recv repeats them)");
                got += n;
                idle_deadline = now_ms() + (uint64_t) ctx->wait_s * 1000u;
        }
        return EXIT_OK;
}

/*
 * The pre-keys' private parts, a text file of lines
 *   spk ID HEX      signed pre-keys, oldest first (the last one is published)
 *   otk ID HEX      one-time pre-keys, oldest first
 * kept so a later X3DH can answer an initial message that used any of them.
 */
typedef struct PrekeyEntry {
        bool signed_prekey;
        uint32_t id;
        uint8_t private_key[SECCLIENT_KEY_SIZE];
} PrekeyEntry;

typedef struct Prekeys {
        PrekeyEntry *e;
        size_t n, cap;
} Prekeys;

static void prekeys_done(Prekeys *p) {
        if (p->e) {
                explicit_bzero(p->e, p->cap * sizeof *p->e);
                free(p->e);
        }
        *p = (Prekeys) {};
}

static int prekeys_push(Prekeys *p, bool spk, uint32_t id, const uint8_t key[SECCLIENT_KEY_SIZE]) {
        if (p->n == p->cap) {
                size_t ncap = p->cap ? p->cap * 2 : 256;
                PrekeyEntry *e = calloc(ncap, sizeof *e);

                if (!e)
                        return -ENOMEM;
                if (p->e) {
                        memcpy(e, p->e, p->n * sizeof *e);
                        explicit_bzero(p->e, p->cap * sizeof *p->e);
                        free(p->e);
                }
                p->e = e;
                p->cap = ncap;
        }
        p->e[p->n++] = (PrekeyEntry) { .signed_prekey = spk, .id = id };
        memcpy(p->e[p->n - 1].private_key, key, SECCLIENT_KEY_SIZE);
        return 0;
}

static int prekeys_load(Context *ctx, Prekeys *ret) {
        uint8_t *buf = NULL;
        size_t len = 0;
        char *line, *save = NULL;
        int r;

        r = home_read(ctx, PREKEYS_FILE, SECMSG_PREKEYS_FILE_MAX, &buf, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = 0;
        if (memchr(buf, '\0', len))
                r = -EBADMSG;
        for (line = strtok_r((char *) buf, "\n", &save); r >= 0 && line; line = strtok_r(NULL, "\n", &save)) {
                uint8_t key[SECCLIENT_KEY_SIZE];
                char *id_text, *hex;
                uint32_t id;
                bool spk;

                /* "spk ID HEX" or "otk ID HEX", nothing else. */
                if (strncmp(line, "spk ", 4) == 0)
                        spk = true;
                else if (strncmp(line, "otk ", 4) == 0)
                        spk = false;
                else {
                        r = -EBADMSG;
                        break;
                }
                id_text = line + 4;
                hex = strchr(id_text, ' ');
                if (!hex) {
                        r = -EBADMSG;
                        break;
                }
                *hex++ = '\0';
                if (parse_uint32(id_text, &id) < 0 || hex_decode_exact(hex, key, sizeof key) < 0)
                        r = -EBADMSG;
                else
                        r = prekeys_push(ret, spk, id, key);
                explicit_bzero(key, sizeof key);
        }
        explicit_bzero(buf, len);
        free(buf);
        if (r == -EBADMSG)
                error_msg("%s in the home directory is damaged", PREKEYS_FILE);
        return r;
}

/* Serialise the newest SECMSG_SPK_KEEP signed and SECMSG_OTK_KEEP one-time keys, and write them. */
static int prekeys_save(Context *ctx, const Prekeys *p) {
        size_t n_spk = 0, n_otk = 0, skip_spk, skip_otk, size, used = 0;
        char *text;
        int r;

        for (size_t i = 0; i < p->n; i++) {
                if (p->e[i].signed_prekey)
                        n_spk++;
                else
                        n_otk++;
        }
        skip_spk = n_spk > SECMSG_SPK_KEEP ? n_spk - SECMSG_SPK_KEEP : 0;
        skip_otk = n_otk > SECMSG_OTK_KEEP ? n_otk - SECMSG_OTK_KEEP : 0;
        /* "otk 4294967295 " + 64 hex + "\n" */
        size = p->n * (4 + 10 + 1 + ADDRESS_HEX_LEN + 1) + 1;
        text = malloc(size);
        if (!text)
                return -ENOMEM;
        for (size_t i = 0; i < p->n; i++) {
                const PrekeyEntry *e = &p->e[i];
                char hex[ADDRESS_HEX_LEN + 1];
                int k;

                if (e->signed_prekey ? (skip_spk > 0 && skip_spk--) : (skip_otk > 0 && skip_otk--))
                        continue;
                hex_encode(e->private_key, sizeof e->private_key, hex);
                k = snprintf(text + used, size - used, "%s %" PRIu32 " %s\n", e->signed_prekey ? "spk" : "otk",
                             e->id, hex);
                explicit_bzero(hex, sizeof hex);
                if (k < 0 || (size_t) k >= size - used) {
                        explicit_bzero(text, size);
                        free(text);
                        return -ENOBUFS;
                }
                used += (size_t) k;
        }
        r = home_write(ctx, PREKEYS_FILE, (const uint8_t *) text, used, true);
        explicit_bzero(text, size);
        free(text);
        return r;
}

static int verb_keys_publish(Context *ctx) {
        _cleanup_(secclient_freep) secclient *c = NULL;
        _cleanup_(prekeys_done) Prekeys keys = {};
        secclient_prekey otks[SECCLIENT_ONE_TIME_MAX];
        uint8_t dh_priv[SECCLIENT_KEY_SIZE], dh_pub[SECCLIENT_KEY_SIZE], priv[SECCLIENT_KEY_SIZE],
                spk_pub[SECCLIENT_KEY_SIZE];
        uint32_t spk_id = 0, otk_id = 0;
        unsigned stored = 0;
        int r;

        r = client_open_registered(ctx, &c);
        if (r != EXIT_OK)
                return r;

        /* The identity X25519 key: made once, kept for ever. */
        r = secret_load_or_create(ctx, IDENTITY_DH_FILE, secclient_x25519_generate, dh_priv);
        if (r < 0)
                return EXIT_FAIL;
        /* Its public half: X25519 of the base point (RFC 7748; nettle clamps). */
        curve25519_mul_g(dh_pub, dh_priv);
        explicit_bzero(dh_priv, sizeof dh_priv);

        r = prekeys_load(ctx, &keys);
        if (r < 0) {
                if (r == -ENOMEM || r == -EIO)
                        error_msg("cannot read %s in the home directory: %s", PREKEYS_FILE, strerror(-r));
                return EXIT_FAIL;
        }
        for (size_t i = 0; i < keys.n; i++) {
                if (keys.e[i].signed_prekey)
                        spk_id = MAX(spk_id, keys.e[i].id);
                else
                        otk_id = MAX(otk_id, keys.e[i].id);
        }
        if (spk_id == UINT32_MAX || otk_id > UINT32_MAX - SECCLIENT_ONE_TIME_MAX) {
                error_msg("pre-key ids exhausted in %s", PREKEYS_FILE);
                return EXIT_FAIL;
        }

        spk_id++;
        r = secclient_x25519_generate(priv, spk_pub);
        if (r >= 0)
                r = prekeys_push(&keys, true, spk_id, priv);
        for (uint32_t i = 0; r >= 0 && i < ctx->count; i++) {
                otks[i].id = ++otk_id;
                r = secclient_x25519_generate(priv, otks[i].public_key);
                if (r >= 0)
                        r = prekeys_push(&keys, false, otks[i].id, priv);
        }
        explicit_bzero(priv, sizeof priv);
        /* The private parts are on disk before secd hands out any public one. */
        if (r >= 0)
                r = prekeys_save(ctx, &keys);
        if (r < 0) {
                error_msg("cannot store the new pre-keys in the home directory: %s", strerror(-r));
                return EXIT_FAIL;
        }

        r = secclient_keys_publish(c, dh_pub, spk_id, spk_pub, otks, ctx->count, &stored);
        if (r < 0)
                return secd_error(c, r, "cannot publish the keys");
        printf("%u\n", stored);
        return stdout_finish();
}

static int verb_keys_count(Context *ctx) {
        _cleanup_(secclient_freep) secclient *c = NULL;
        unsigned count = 0;
        int r;

        r = client_open_registered(ctx, &c);
        if (r != EXIT_OK)
                return r;
        r = secclient_keys_count(c, &count);
        if (r < 0)
                return secd_error(c, r, "cannot count the one-time pre-keys");
        printf("%u\n", count);
        return stdout_finish();
}

static int json_add_hex(json_object *o, const char *key, const uint8_t *p, size_t n) {
        char hex[2 * 64 + 1];

        hex_encode(p, MIN(n, (size_t) 64), hex);
        return json_object_object_add(o, key, json_object_new_string(hex));
}

static int verb_keys_bundle(Context *ctx) {
        _cleanup_(secclient_freep) secclient *c = NULL;
        uint8_t mailbox[SECCLIENT_KEY_SIZE];
        secclient_bundle b;
        int r;

        if (address_parse(ctx->args[0], mailbox) < 0)
                return usage_error("invalid ADDRESS '%s': expected 64 lower-case hex characters", ctx->args[0]);
        r = client_open(ctx, &c);
        if (r != EXIT_OK)
                return r;
        r = secclient_keys_bundle(c, mailbox, &b);
        if (r < 0)
                return secd_error(c, r, "cannot fetch the key bundle");

        if (ctx->json) {
                json_object *o = json_object_new_object();
                const char *text;

                if (!o || json_add_hex(o, "identity_key", b.identity_key, sizeof b.identity_key) < 0 ||
                    json_add_hex(o, "identity_dh", b.identity_dh, sizeof b.identity_dh) < 0 ||
                    json_object_object_add(o, "signed_prekey_id", json_object_new_int64(b.signed_prekey_id)) < 0 ||
                    json_add_hex(o, "signed_prekey", b.signed_prekey, sizeof b.signed_prekey) < 0 ||
                    json_object_object_add(o, "one_time_prekey_id",
                                           b.has_one_time ? json_object_new_int64(b.one_time.id) : NULL) < 0 ||
                    (b.has_one_time ? json_add_hex(o, "one_time_prekey", b.one_time.public_key, SECCLIENT_KEY_SIZE)
                                    : json_object_object_add(o, "one_time_prekey", NULL)) < 0) {
                        json_object_put(o);
                        error_msg("out of memory");
                        return EXIT_FAIL;
                }
                text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
                printf("%s\n", text ?: "{}");
                json_object_put(o);
        } else {
                print_hex_line(stdout, "identity_key", b.identity_key, sizeof b.identity_key);
                print_hex_line(stdout, "identity_dh", b.identity_dh, sizeof b.identity_dh);
                printf("signed_prekey_id %" PRIu32 "\n", b.signed_prekey_id);
                print_hex_line(stdout, "signed_prekey", b.signed_prekey, sizeof b.signed_prekey);
                if (b.has_one_time) {
                        printf("one_time_prekey_id %" PRIu32 "\n", b.one_time.id);
                        print_hex_line(stdout, "one_time_prekey", b.one_time.public_key, SECCLIENT_KEY_SIZE);
                } else
                        fprintf(stderr, "secmsg: the mailbox has no one-time pre-key left\n");
        }
        return stdout_finish();
}

/* ---------------------------------------------------------------------- */
/* Dispatch */

static void help(FILE *f) {
        char left[128];

        fprintf(f,
                "Usage: secmsg [OPTIONS...] VERB [ARGS...]\n"
                "\n"
                "Send and receive messages through secd's relay, and publish and fetch X3DH pre-keys.\n"
                "\n"
                "Verbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const Verb *v = &verbs[i];

                (void) snprintf(left, sizeof left, "%s%s%s%s%s", v->name, v->sub ? " " : "", v->sub ?: "",
                                isempty(v->synopsis) ? "" : " ", v->synopsis);
                if (strlen(left) > 30)
                        fprintf(f, "  %s\n  %-30s  %s\n", left, "", v->help);
                else
                        fprintf(f, "  %-30s  %s\n", left, v->help);
        }
        fprintf(f, "\nOptions:\n");
        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                (void) snprintf(left, sizeof left, "%s--%s%s%s", options[i].opt.val == OPT_HELP ? "-h " : "   ",
                                options[i].opt.name, options[i].metavar ? " " : "", options[i].metavar ?: "");
                fprintf(f, "  %-26s  %s\n", left, options[i].help);
        }
        fprintf(f, "\nExit status:\n");
        for (size_t i = 0; i < ELEMENTSOF(exit_statuses); i++)
                fprintf(f, "  %d  %s\n", exit_statuses[i].code, exit_statuses[i].help);
        fprintf(f, "\nSee secmsg(1) for details.\n");
}

static int parse_options(Context *ctx, int argc, char **argv, bool *ret_run) {
        struct option longopts[ELEMENTSOF(options) + 1] = {};
        uint64_t u64;
        uint32_t u32;
        int c;

        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                longopts[i] = options[i].opt;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) >= 0) {
                if (c >= OPT_VERSION && c <= OPT_JSON)
                        ctx->used |= OPTBIT(c);
                switch (c) {
                case OPT_HELP:
                        help(stdout);
                        return stdout_finish();
                case OPT_VERSION:
                        printf("secmsg %s (libsecclient %s)\n", SECD_VERSION, secclient_version());
                        return stdout_finish();
                case OPT_SOCKET:
                        if (isempty(optarg) || strlen(optarg) > SECMSG_PATH_MAX)
                                return usage_error("invalid --socket: expected a path");
                        ctx->socket = optarg;
                        break;
                case OPT_ENROLL_SOCKET:
                        if (isempty(optarg) || strlen(optarg) > SECMSG_PATH_MAX)
                                return usage_error("invalid --enroll-socket: expected a path");
                        ctx->enroll_socket = optarg;
                        break;
                case OPT_HOME:
                        if (isempty(optarg) || strlen(optarg) > SECMSG_PATH_MAX)
                                return usage_error("invalid --home: expected a directory");
                        ctx->home = optarg;
                        break;
                case OPT_TO:
                        ctx->to = optarg;
                        break;
                case OPT_WAIT:
                        if (parse_uint32(optarg, &u32) < 0 || u32 > SECMSG_WAIT_MAX)
                                return usage_error("invalid --wait '%s': expected seconds from 0 to %u", optarg,
                                                   SECMSG_WAIT_MAX);
                        ctx->wait_s = u32;
                        break;
                case OPT_MAX:
                        if (parse_uint64(optarg, &u64) < 0 || u64 == 0)
                                return usage_error("invalid --max '%s': expected a number of messages from 1",
                                                   optarg);
                        ctx->max = u64;
                        break;
                case OPT_COUNT:
                        if (parse_uint32(optarg, &u32) < 0 || u32 > SECCLIENT_ONE_TIME_MAX)
                                return usage_error("invalid --count '%s': expected a number from 0 to %d", optarg,
                                                   SECCLIENT_ONE_TIME_MAX);
                        ctx->count = u32;
                        break;
                case OPT_JSON:
                        ctx->json = true;
                        break;
                case ':':
                        return usage_error("option '%s' needs a value", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }
        *ret_run = true;
        return EXIT_OK;
}

static const Verb *verb_find(char **words, int n, int *ret_taken) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const Verb *v = &verbs[i];

                if (n < 1 || !streq(v->name, words[0]))
                        continue;
                if (!v->sub) {
                        *ret_taken = 1;
                        return v;
                }
                if (n >= 2 && streq(v->sub, words[1])) {
                        *ret_taken = 2;
                        return v;
                }
        }
        return NULL;
}

int main(int argc, char **argv) {
        Context ctx = { .count = SECCLIENT_ONE_TIME_MAX, .home_fd = -EBADF };
        const unsigned global = OPTBIT(OPT_VERSION) | OPTBIT(OPT_SOCKET) | OPTBIT(OPT_ENROLL_SOCKET) |
                                OPTBIT(OPT_HOME);
        const Verb *v;
        bool run = false;
        int r, taken = 0;

        /* Files we create are private; a closed pipe is an error to report, not a signal. */
        umask(077);
        (void) signal(SIGPIPE, SIG_IGN);

        r = parse_options(&ctx, argc, argv, &run);
        if (!run)
                return r;

        if (optind >= argc)
                return usage_error("no verb given");
        v = verb_find(argv + optind, argc - optind, &taken);
        if (!v) {
                if (streq(argv[optind], "keys"))
                        return usage_error("unknown keys verb%s%s: expected publish, count or bundle",
                                           optind + 1 < argc ? " " : "", optind + 1 < argc ? argv[optind + 1] : "");
                return usage_error("unknown verb '%s'", argv[optind]);
        }
        ctx.args = argv + optind + taken;
        ctx.n_args = argc - optind - taken;
        if (ctx.n_args < v->min_args || ctx.n_args > v->max_args)
                return usage_error("%s%s%s takes %s: %s%s%s %s", v->name, v->sub ? " " : "", v->sub ?: "",
                                   v->max_args == 0 ? "no arguments" : v->min_args == v->max_args ? "one argument"
                                                                                                : "at most one argument",
                                   v->name, v->sub ? " " : "", v->sub ?: "", v->synopsis);
        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                int id = options[i].opt.val;

                if (id < OPT_VERSION)
                        continue;
                if ((ctx.used & OPTBIT(id)) && !((global | v->options) & OPTBIT(id)))
                        return usage_error("--%s does not apply to %s%s%s", options[i].opt.name, v->name,
                                           v->sub ? " " : "", v->sub ?: "");
        }

        r = v->handler(&ctx);
        ctx.home_fd = safe_close(ctx.home_fd);
        return r;
}
