/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Durable relay throughput and latency through secd over mTLS
 * (bench/README.md, "Relay"; run by bench/run-relay-bench.sh):
 *
 *   bench-relay --socket PATH --enroll PATH [--senders 64] [--mailboxes 8]
 *               [--seconds 10] [--count N] [--size 1024] [--warmup 1]
 *               [--rate R | --no-paced] [--paced-seconds S] [--server-pid PID]
 *
 * One handle enrolls (io.secd.Enroll.Issue); every other handle gets the
 * same credentials over a socketpair (secclient_creds_send/recv) and opens
 * its own mTLS connection. --mailboxes consumer threads each register a
 * mailbox and drain it (FETCH with wait, ACK), so quotas never fill.
 *
 *   max    --senders threads, each with its own secclient, send --size
 *          byte messages with secclient_relay_send() (one in flight per
 *          sender: it returns once secd stored the message durably) to the
 *          mailboxes in turn, for --seconds or --count messages. Prints
 *          acknowledged msgs/s and send->ack latency p50/p99/max.
 *   paced  open loop at --rate msgs/s (default: half of what max measured):
 *          message k is scheduled at start + k/rate and taken by whichever
 *          sender is free; its latency runs from the scheduled time, so a
 *          stall is charged to every message it delays (no coordinated
 *          omission). Prints p50/p99/max and how many started late.
 *
 * Afterwards every acknowledged message must have been delivered to a
 * consumer (within 30 s): the bench fails if one is missing. It never fails
 * on timing. Every wait is bounded (the library's 10 s timeout per call,
 * the phases by time and count). Messages are random bytes except for a
 * 16-byte header (magic, sender, sequence) that the consumers check.
 */

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "macro.h"
#include "secclient.h"

#define SENDERS_DEFAULT 64
#define SENDERS_MAX 512
#define MAILBOXES_DEFAULT 8
#define MAILBOXES_MAX 64
#define SECONDS_DEFAULT 10
#define SECONDS_MAX 600
#define COUNT_DEFAULT 2000000
#define COUNT_MAX 20000000
#define SIZE_DEFAULT 1024
#define SIZE_MIN 16
#define SIZE_MAX_ (96 * 1024)
#define RATE_MAX 10000000
#define TIMEOUT_MS 10000
#define FETCH_WAIT_MS 200
#define DRAIN_SECONDS 30
#define MAGIC UINT32_C(0x52454c59)     /* "RELY" */
#define LATENCY_FAILED UINT64_MAX

static const char *arg_socket, *arg_enroll;
static unsigned arg_senders = SENDERS_DEFAULT, arg_mailboxes = MAILBOXES_DEFAULT;
static unsigned arg_seconds = SECONDS_DEFAULT, arg_paced_seconds = SECONDS_DEFAULT, arg_warmup = 1;
static uint64_t arg_count = COUNT_DEFAULT;
static size_t arg_size = SIZE_DEFAULT;
static double arg_rate;
static bool arg_paced = true;
static pid_t arg_server_pid;

static _noreturn_ void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _noreturn_ void die(const char *fmt, ...) {
        va_list ap;

        fputs("bench-relay: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static uint64_t parse_u64(const char *s, uint64_t min, uint64_t max, const char *what) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || *end || s[0] == '-' || v < min || v > max)
                die("%s: expected a number in %" PRIu64 "..%" PRIu64 ", got '%s'", what, min, max, s);
        return v;
}

static void put_be32(uint8_t *p, uint32_t v) {
        for (size_t i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (24 - 8 * i));
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v) {
        for (size_t i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (56 - 8 * i));
}

/* utime + stime of a process, all threads, in clock ticks; 0 if unreadable. */
static uint64_t process_cpu_ticks(pid_t pid) {
        char path[64], buf[4096], *p;
        unsigned long long utime, stime;
        size_t n;
        FILE *f;

        if (pid <= 0)
                return 0;
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* The command name may contain anything: fields count from the last ')'. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return 0;
        return utime + stime;
}

static uint64_t self_cpu_ns(void) {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return ((uint64_t) ru.ru_utime.tv_sec + (uint64_t) ru.ru_stime.tv_sec) * 1000000000u +
               ((uint64_t) ru.ru_utime.tv_usec + (uint64_t) ru.ru_stime.tv_usec) * 1000u;
}

/* ---- state shared by the threads ----------------------------------------- */

typedef enum Phase { PHASE_WARMUP, PHASE_MAX, PHASE_PACED } Phase;

static secclient **senders;
static secclient **consumers;
static uint8_t (*mailboxes)[SECCLIENT_KEY_SIZE];
static uint8_t *body_template;

/* One phase of sends: slot k of latency_ns belongs to the sender that took k. */
static struct {
        Phase phase;
        uint64_t start_ns, end_ns, interval_ns, count;
        _Atomic uint64_t next;          /* the next message slot */
        uint64_t *latency_ns;           /* [count], LATENCY_FAILED for a failed send */
        uint64_t *service_ns;           /* [count], from the actual start of the send */
        _Atomic uint64_t acked, failed, late, duplicates;
        _Atomic uint64_t last_ack_ns;
        _Atomic int first_error;
} run;

static _Atomic uint64_t acked_total, delivered_total, consumer_errors;
static _Atomic bool consumers_stop;

static void *sender_thread(void *userdata) {
        unsigned idx = (unsigned) (uintptr_t) userdata;
        secclient *c = senders[idx];
        uint8_t *body = malloc(arg_size);

        if (!body)
                die("out of memory");
        memcpy(body, body_template, arg_size);

        /* Everyone starts at start_ns, so the rate's clock starts with the first send. */
        {
                struct timespec ts = { .tv_sec = (time_t) (run.start_ns / 1000000000u),
                                       .tv_nsec = (long) (run.start_ns % 1000000000u) };

                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                        ;
        }

        for (;;) {
                uint64_t k = atomic_fetch_add(&run.next, 1), sched = 0, t0, t1;
                int duplicate = 0, r;

                if (k >= run.count)
                        break;
                if (run.phase == PHASE_PACED) {
                        struct timespec ts;

                        sched = run.start_ns + k * run.interval_ns;
                        if (sched >= run.end_ns)
                                break;
                        ts.tv_sec = (time_t) (sched / 1000000000u);
                        ts.tv_nsec = (long) (sched % 1000000000u);
                        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                                ;
                } else if (now_ns() >= run.end_ns)
                        break;

                put_be32(body, MAGIC);
                put_be32(body + 4, idx);
                put_be64(body + 8, k);
                t0 = now_ns();
                if (run.phase == PHASE_PACED && t0 - sched > 1000000)
                        atomic_fetch_add(&run.late, 1);         /* started > 1 ms after its time */
                r = secclient_relay_send(c, mailboxes[(idx + k) % arg_mailboxes], NULL, body, arg_size, NULL,
                                         &duplicate);
                t1 = now_ns();
                if (r < 0) {
                        int expected = 0;

                        run.latency_ns[k] = run.service_ns[k] = LATENCY_FAILED;
                        atomic_fetch_add(&run.failed, 1);
                        atomic_compare_exchange_strong(&run.first_error, &expected, r);
                        /* Over a limit (the script raises them) or a dead connection: report, stop this sender. */
                        fprintf(stderr, "bench-relay: sender %u: %s (%s)\n", idx, secclient_strerror(r),
                                secclient_last_error(c) ?: "-");
                        break;
                }
                if (duplicate)
                        atomic_fetch_add(&run.duplicates, 1);
                run.latency_ns[k] = t1 - (run.phase == PHASE_PACED ? sched : t0);
                run.service_ns[k] = t1 - t0;
                atomic_fetch_add(&run.acked, 1);
                atomic_fetch_add(&acked_total, 1);
                {
                        uint64_t last = atomic_load(&run.last_ack_ns);

                        while (last < t1 && !atomic_compare_exchange_weak(&run.last_ack_ns, &last, t1))
                                ;
                }
        }
        free(body);
        return NULL;
}

static void *consumer_thread(void *userdata) {
        unsigned idx = (unsigned) (uintptr_t) userdata;
        secclient *c = consumers[idx];

        while (!atomic_load(&consumers_stop)) {
                secclient_message *m = NULL;
                uint64_t ids[SECCLIENT_FETCH_MAX];
                size_t n = 0;
                int r;

                r = secclient_relay_fetch(c, SECCLIENT_FETCH_MAX, 0, FETCH_WAIT_MS, &m, &n);
                if (r == -ETIMEDOUT)
                        continue;
                if (r < 0) {
                        fprintf(stderr, "bench-relay: consumer %u: fetch: %s (%s)\n", idx, secclient_strerror(r),
                                secclient_last_error(c) ?: "-");
                        atomic_fetch_add(&consumer_errors, 1);
                        return NULL;
                }
                for (size_t i = 0; i < n; i++) {
                        if (m[i].len != arg_size || get_be32(m[i].data) != MAGIC ||
                            get_be32(m[i].data + 4) >= arg_senders)
                                die("consumer %u: message %" PRIu64 " is not one of ours (%zu bytes)", idx, m[i].id,
                                    m[i].len);
                        ids[i] = m[i].id;
                }
                secclient_messages_free(m, n);
                if (n == 0)
                        continue;
                r = secclient_relay_ack(c, ids, n, NULL);
                if (r < 0) {
                        fprintf(stderr, "bench-relay: consumer %u: ack: %s (%s)\n", idx, secclient_strerror(r),
                                secclient_last_error(c) ?: "-");
                        atomic_fetch_add(&consumer_errors, 1);
                        return NULL;
                }
                atomic_fetch_add(&delivered_total, n);
        }
        return NULL;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return (x > y) - (x < y);
}

/* Sorted latencies of the acknowledged messages (failed slots and unused ones dropped). */
static uint64_t *latencies_sorted(const uint64_t *latency_ns, size_t *ret_n) {
        uint64_t used = MIN(atomic_load(&run.next), run.count);
        uint64_t *v = malloc(sizeof *v * (used ? used : 1));
        size_t n = 0;

        if (!v)
                die("out of memory");
        for (uint64_t k = 0; k < used; k++)
                if (latency_ns[k] != LATENCY_FAILED)
                        v[n++] = latency_ns[k];
        qsort(v, n, sizeof *v, cmp_u64);
        *ret_n = n;
        return v;
}

static double percentile_us(const uint64_t *v, size_t n, double p) {
        size_t i;

        if (n == 0)
                return 0;
        i = (size_t) (p * (double) (n - 1) + 0.5);
        return (double) v[MIN(i, n - 1)] / 1e3;
}

static const char *phase_name(Phase p) {
        return p == PHASE_WARMUP ? "warmup" : p == PHASE_MAX ? "max" : "paced";
}

/* Run one phase; returns the acknowledged msgs/s. */
static double phase_run(Phase phase, unsigned seconds, double rate) {
        pthread_t *threads = calloc(arg_senders, sizeof *threads);
        uint64_t cpu0, cpu1, self0, self1, acked, elapsed;
        double msgs_per_s;
        size_t n;
        uint64_t *sorted;

        if (!threads)
                die("out of memory");
        /* A paced phase schedules at most rate * seconds messages. */
        run.phase = phase;
        run.count = arg_count;
        if (phase == PHASE_PACED)
                run.count = MIN(arg_count, (uint64_t) (rate * seconds) + 1);
        run.interval_ns = phase == PHASE_PACED ? (uint64_t) (1e9 / rate) : 0;
        atomic_store(&run.next, 0);
        atomic_store(&run.acked, 0);
        atomic_store(&run.failed, 0);
        atomic_store(&run.late, 0);
        atomic_store(&run.duplicates, 0);
        atomic_store(&run.first_error, 0);
        memset(run.latency_ns, 0xff, sizeof *run.latency_ns * run.count);
        memset(run.service_ns, 0xff, sizeof *run.service_ns * run.count);

        cpu0 = process_cpu_ticks(arg_server_pid);
        self0 = self_cpu_ns();
        /* Threads start in the 10 ms before start_ns; a paced schedule starts at start_ns. */
        run.start_ns = now_ns() + 10000000;
        run.end_ns = run.start_ns + (uint64_t) seconds * 1000000000u;
        atomic_store(&run.last_ack_ns, run.start_ns);
        for (unsigned i = 0; i < arg_senders; i++)
                if (pthread_create(&threads[i], NULL, sender_thread, (void *) (uintptr_t) i) != 0)
                        die("pthread_create failed");
        for (unsigned i = 0; i < arg_senders; i++)
                pthread_join(threads[i], NULL);
        free(threads);
        self1 = self_cpu_ns();
        cpu1 = process_cpu_ticks(arg_server_pid);

        acked = atomic_load(&run.acked);
        elapsed = atomic_load(&run.last_ack_ns) - run.start_ns;
        msgs_per_s = elapsed > 0 ? (double) acked * 1e9 / (double) elapsed : 0;
        sorted = latencies_sorted(run.latency_ns, &n);

        printf("relay phase=%s senders=%u mailboxes=%u size=%zu seconds=%.3f acked=%" PRIu64 " failed=%" PRIu64
               " duplicates=%" PRIu64 " msgs_per_s=%.0f",
               phase_name(phase), arg_senders, arg_mailboxes, arg_size, (double) elapsed / 1e9, acked,
               atomic_load(&run.failed), atomic_load(&run.duplicates), msgs_per_s);
        if (phase == PHASE_PACED) {
                /* Diagnosis: the same sends timed from when they really started (the client's own delay left out). */
                size_t ns;
                uint64_t *service = latencies_sorted(run.service_ns, &ns);

                printf(" rate=%.0f late_1ms=%" PRIu64 " service_p50_us=%.0f service_p99_us=%.0f", rate,
                       atomic_load(&run.late), percentile_us(service, ns, 0.50), percentile_us(service, ns, 0.99));
                free(service);
        }
        printf(" p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f",
               percentile_us(sorted, n, 0.50), percentile_us(sorted, n, 0.90), percentile_us(sorted, n, 0.99),
               percentile_us(sorted, n, 0.999), n ? (double) sorted[n - 1] / 1e3 : 0.0);
        if (acked > 0) {
                if (arg_server_pid > 0)
                        printf(" server_cpu_us_per_msg=%.1f server_cpu_util=%.2f",
                               (double) (cpu1 - cpu0) * 1e6 / (double) sysconf(_SC_CLK_TCK) / (double) acked,
                               (double) (cpu1 - cpu0) / (double) sysconf(_SC_CLK_TCK) / ((double) elapsed / 1e9));
                printf(" client_cpu_us_per_msg=%.1f", (double) (self1 - self0) / 1e3 / (double) acked);
        }
        printf("\n");
        fflush(stdout);
        free(sorted);
        if (atomic_load(&run.failed) > 0)
                die("%" PRIu64 " sends failed in phase %s (first: %s); see above", atomic_load(&run.failed),
                    phase_name(phase), secclient_strerror(atomic_load(&run.first_error)));
        return msgs_per_s;
}

/* Wait (bounded) until the consumers have every acknowledged message. */
static void drain(const char *after) {
        uint64_t deadline = now_ns() + (uint64_t) DRAIN_SECONDS * 1000000000u;

        while (atomic_load(&delivered_total) < atomic_load(&acked_total)) {
                if (atomic_load(&consumer_errors) > 0)
                        die("a consumer failed");
                if (now_ns() >= deadline)
                        die("after %s: %" PRIu64 " messages acknowledged but only %" PRIu64
                            " delivered within %d s", after, atomic_load(&acked_total),
                            atomic_load(&delivered_total), DRAIN_SECONDS);
                usleep(10000);
        }
}

static secclient *client_new(void) {
        secclient *c;
        int r;

        r = secclient_new(&c);
        if (r < 0)
                die("secclient_new: %s", secclient_strerror(r));
        r = secclient_set_endpoint(c, arg_socket);
        if (r < 0)
                die("--socket %s: %s", arg_socket, secclient_strerror(r));
        r = secclient_set_enroll_socket(c, arg_enroll);
        if (r < 0)
                die("--enroll %s: %s", arg_enroll, secclient_strerror(r));
        r = secclient_set_timeout(c, TIMEOUT_MS);
        if (r < 0)
                die("secclient_set_timeout: %s", secclient_strerror(r));
        return c;
}

/* A handle with the leader's credentials (over a socketpair, as to a child), connected. */
static secclient *client_from(secclient *leader) {
        secclient *c = client_new();
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair: %m");
        r = secclient_creds_send(leader, sv[0]);
        if (r < 0)
                die("secclient_creds_send: %s", secclient_strerror(r));
        r = secclient_creds_recv(c, sv[1]);
        if (r < 0)
                die("secclient_creds_recv: %s", secclient_strerror(r));
        close(sv[0]);
        close(sv[1]);
        r = secclient_connect(c);
        if (r < 0)
                die("secclient_connect: %s (%s)", secclient_strerror(r), secclient_last_error(c) ?: "-");
        return c;
}

static void help(void) {
        printf("usage: bench-relay --socket PATH --enroll PATH [--senders N] [--mailboxes N] [--seconds S]\n"
               "                   [--count N] [--size BYTES] [--warmup S] [--rate R | --no-paced]\n"
               "                   [--paced-seconds S] [--server-pid PID]\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 'S' },
                { "enroll", required_argument, NULL, 'E' },
                { "senders", required_argument, NULL, 'n' },
                { "mailboxes", required_argument, NULL, 'm' },
                { "seconds", required_argument, NULL, 's' },
                { "paced-seconds", required_argument, NULL, 'P' },
                { "warmup", required_argument, NULL, 'w' },
                { "count", required_argument, NULL, 'c' },
                { "size", required_argument, NULL, 'z' },
                { "rate", required_argument, NULL, 'r' },
                { "no-paced", no_argument, NULL, 'N' },
                { "server-pid", required_argument, NULL, 'p' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        pthread_t *consumer_threads;
        secclient *leader;
        double max_rate, rate;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'S': arg_socket = optarg; break;
                case 'E': arg_enroll = optarg; break;
                case 'n': arg_senders = (unsigned) parse_u64(optarg, 1, SENDERS_MAX, "--senders"); break;
                case 'm': arg_mailboxes = (unsigned) parse_u64(optarg, 1, MAILBOXES_MAX, "--mailboxes"); break;
                case 's': arg_seconds = (unsigned) parse_u64(optarg, 1, SECONDS_MAX, "--seconds"); break;
                case 'P': arg_paced_seconds = (unsigned) parse_u64(optarg, 1, SECONDS_MAX, "--paced-seconds"); break;
                case 'w': arg_warmup = (unsigned) parse_u64(optarg, 0, 60, "--warmup"); break;
                case 'c': arg_count = parse_u64(optarg, 1, COUNT_MAX, "--count"); break;
                case 'z': arg_size = (size_t) parse_u64(optarg, SIZE_MIN, SIZE_MAX_, "--size"); break;
                case 'r': arg_rate = (double) parse_u64(optarg, 1, RATE_MAX, "--rate"); break;
                case 'N': arg_paced = false; break;
                case 'p': arg_server_pid = (pid_t) parse_u64(optarg, 1, INT32_MAX, "--server-pid"); break;
                case 'h': help(); return EXIT_SUCCESS;
                default: help(); return 2;
                }
        if (optind != argc || !arg_socket || !arg_enroll) {
                help();
                return 2;
        }

        senders = calloc(arg_senders, sizeof *senders);
        consumers = calloc(arg_mailboxes, sizeof *consumers);
        mailboxes = calloc(arg_mailboxes, sizeof *mailboxes);
        consumer_threads = calloc(arg_mailboxes, sizeof *consumer_threads);
        body_template = malloc(arg_size);
        run.latency_ns = calloc(arg_count, sizeof *run.latency_ns);
        run.service_ns = calloc(arg_count, sizeof *run.service_ns);
        if (!senders || !consumers || !mailboxes || !consumer_threads || !body_template || !run.latency_ns || !run.service_ns)
                die("out of memory");
        {
                FILE *f = fopen("/dev/urandom", "re");

                if (!f || fread(body_template, 1, arg_size, f) != arg_size)
                        die("/dev/urandom: %m");
                fclose(f);
        }

        /* Enroll once; everyone else gets these credentials. */
        leader = client_new();
        r = secclient_enroll(leader);
        if (r < 0)
                die("secclient_enroll: %s (%s)", secclient_strerror(r), secclient_last_error(leader) ?: "-");

        for (unsigned i = 0; i < arg_mailboxes; i++) {
                uint8_t seed[SECCLIENT_KEY_SIZE];

                consumers[i] = client_from(leader);
                r = secclient_identity_generate(seed, mailboxes[i]);
                if (r < 0)
                        die("secclient_identity_generate: %s", secclient_strerror(r));
                r = secclient_register(consumers[i], seed, NULL);
                explicit_bzero(seed, sizeof seed);
                if (r < 0)
                        die("secclient_register: %s (%s)", secclient_strerror(r),
                            secclient_last_error(consumers[i]) ?: "-");
        }
        for (unsigned i = 0; i < arg_senders; i++)
                senders[i] = client_from(leader);
        leader = secclient_free(leader);

        for (unsigned i = 0; i < arg_mailboxes; i++)
                if (pthread_create(&consumer_threads[i], NULL, consumer_thread, (void *) (uintptr_t) i) != 0)
                        die("pthread_create failed");

        if (arg_warmup > 0) {
                (void) phase_run(PHASE_WARMUP, arg_warmup, 0);
                drain("warmup");
        }
        max_rate = phase_run(PHASE_MAX, arg_seconds, 0);
        drain("max");
        if (arg_paced) {
                rate = arg_rate > 0 ? arg_rate : max_rate / 2;
                if (rate < 1)
                        die("no rate to pace at (max measured %.0f msgs/s)", max_rate);
                (void) phase_run(PHASE_PACED, arg_paced_seconds, rate);
                drain("paced");
        }

        /* One more long-poll round: a message delivered twice would show up now. */
        usleep(2 * FETCH_WAIT_MS * 1000);
        atomic_store(&consumers_stop, true);
        for (unsigned i = 0; i < arg_mailboxes; i++)
                pthread_join(consumer_threads[i], NULL);
        printf("relay delivered=%" PRIu64 " acked=%" PRIu64 "\n", atomic_load(&delivered_total),
               atomic_load(&acked_total));
        if (atomic_load(&delivered_total) != atomic_load(&acked_total))
                die("%" PRIu64 " messages delivered for %" PRIu64 " acknowledged: not exactly once",
                    atomic_load(&delivered_total), atomic_load(&acked_total));

        for (unsigned i = 0; i < arg_senders; i++)
                secclient_free(senders[i]);
        for (unsigned i = 0; i < arg_mailboxes; i++)
                secclient_free(consumers[i]);
        free(senders);
        free(consumers);
        free(mailboxes);
        free(consumer_threads);
        free(body_template);
        free(run.latency_ns);
        free(run.service_ns);
        return atomic_load(&consumer_errors) > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
