/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The group-commit writer against a real store in a temp dir and a real
 * sd_event loop: order, per-job rollback, batching, exactly-once
 * completions, back-pressure, shutdown, and the failure paths (a COMMIT
 * that fails, a transaction SQLite rolled back by itself).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "db-internal.h"
#include "writer.h"

#define N_BATCH 500

typedef struct Fixture {
        char dir[64];
        char path[128];
        sd_event *event;
        Writer *writer;
} Fixture;

/* One job's record: what it does and what happened to it. */
typedef struct Job {
        unsigned index;
        int fail_with;                  /* run() returns this after writing (>= 0: success, passed to done()) */
        bool raw_rollback;              /* run() rolls the whole transaction back behind the writer's back */
        bool dangling_fk;               /* run() writes a row whose foreign key is checked only at COMMIT */
        unsigned runs;
        unsigned dones;
        int result;
        unsigned run_seq, done_seq;     /* global order of run() and done() */
} Job;

static unsigned run_counter, done_counter;

/* A job that holds the writer thread until released, so that later jobs pile up into one batch. */
typedef struct Gate {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool entered, released;
        unsigned dones;
} Gate;

static int gate_run(Db *db, void *userdata) {
        Gate *g = userdata;

        (void) pthread_mutex_lock(&g->lock);
        g->entered = true;
        (void) pthread_cond_broadcast(&g->cond);
        while (!g->released)
                (void) pthread_cond_wait(&g->cond, &g->lock);
        (void) pthread_mutex_unlock(&g->lock);
        return 0;
}

static void gate_done(void *userdata, int r) {
        Gate *g = userdata;
        g->dones++;
}

static void gate_init(Gate *g) {
        *g = (Gate) {};
        (void) pthread_mutex_init(&g->lock, NULL);
        (void) pthread_cond_init(&g->cond, NULL);
}

/* Submit the gate and wait (bounded) until the thread is inside it: the queue is then empty. */
static void gate_close(Writer *w, Gate *g) {
        struct timespec deadline;

        assert_int_equal(writer_submit(w, gate_run, gate_done, g), 0);
        (void) clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 10;
        (void) pthread_mutex_lock(&g->lock);
        while (!g->entered)
                if (pthread_cond_timedwait(&g->cond, &g->lock, &deadline) != 0)
                        break;
        (void) pthread_mutex_unlock(&g->lock);
        assert_true(g->entered);
}

/* After the gate job's completion: the thread is done with it. */
static void gate_destroy(Gate *g) {
        assert_int_equal(g->dones, 1);
        (void) pthread_cond_destroy(&g->cond);
        (void) pthread_mutex_destroy(&g->lock);
}

static void gate_open(Gate *g) {
        (void) pthread_mutex_lock(&g->lock);
        g->released = true;
        (void) pthread_cond_broadcast(&g->cond);
        (void) pthread_mutex_unlock(&g->lock);
}

static int job_run(Db *db, void *userdata) {
        Job *j = userdata;
        char message[64];
        DbAuditEntry e = { .kind = (char *) "test", .message = message };
        int r;

        j->runs++;
        j->run_seq = ++run_counter;
        (void) snprintf(message, sizeof message, "job %u", j->index);
        r = db_audit_append(db, &e, NULL);
        if (r < 0)
                return r;
        if (j->dangling_fk) {
                /* A revocation of a certificate that does not exist; with deferred keys only COMMIT sees it. */
                if (sqlite3_exec(db->sqlite, "PRAGMA defer_foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK ||
                    sqlite3_exec(db->sqlite,
                                 "INSERT INTO revocations(serial, revoked_usec, reason) VALUES (x'0102', 1, 0)", NULL,
                                 NULL, NULL) != SQLITE_OK)
                        return -EIO;
        }
        if (j->raw_rollback && sqlite3_exec(db->sqlite, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
                return -EIO;
        return j->fail_with;
}

static void job_done(void *userdata, int r) {
        Job *j = userdata;

        j->dones++;
        j->done_seq = ++done_counter;
        j->result = r;
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        Db *db = NULL;

        assert_non_null(f);
        (void) snprintf(f->dir, sizeof f->dir, "/tmp/test-writer-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        (void) snprintf(f->path, sizeof f->path, "%s/secd.db", f->dir);
        /* The manager creates and migrates the store; the writer only opens it. */
        assert_int_equal(db_open(f->path, DB_OPEN_CREATE, &db), 0);
        db_close(db);
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(writer_new(f->event, f->path, 0, &f->writer), 0);
        run_counter = done_counter = 0;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        char p[160];

        writer_free(f->writer);
        sd_event_unref(f->event);
        (void) unlink(f->path);
        (void) snprintf(p, sizeof p, "%s-wal", f->path);
        (void) unlink(p);
        (void) snprintf(p, sizeof p, "%s-shm", f->path);
        (void) unlink(p);
        (void) rmdir(f->dir);
        free(f);
        return 0;
}

/* Run the loop until every job's done() came, at most ~20 s. */
static void run_until_done(sd_event *e, Job *jobs, size_t n) {
        for (unsigned i = 0; i < 2000; i++) {
                bool all = true;

                for (size_t k = 0; k < n; k++)
                        if (jobs[k].dones == 0)
                                all = false;
                if (all)
                        return;
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
        }
        fail_msg("writer completions did not arrive");
}

/* Drain a few more iterations: nothing must arrive twice. */
static void run_idle(sd_event *e) {
        for (unsigned i = 0; i < 5; i++)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
}

/* The audit messages stored, read through a handle of our own, oldest first. */
static size_t stored_messages(const char *path, char ***ret) {
        Db *db = NULL;
        DbAuditEntry *list = NULL;
        size_t n = 0;
        char **m;

        assert_int_equal(db_open(path, DB_OPEN_READONLY, &db), 0);
        assert_int_equal(db_audit_list(db, 0, DB_AUDIT_LIST_MAX, &list, &n), 0);
        m = calloc(n + 1, sizeof *m);
        assert_non_null(m);
        for (size_t i = 0; i < n; i++)
                m[i] = strdup(list[i].message);
        db_audit_entries_free(list, n);
        db_close(db);
        *ret = m;
        return n;
}

static void strv_free(char **m) {
        for (char **p = m; p && *p; p++)
                free(*p);
        free(m);
}

static void test_order(void **state) {
        Fixture *f = *state;
        Job jobs[50] = {};
        char **m = NULL;
        size_t n;

        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                jobs[i].index = i;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        /* Never from inside submit. */
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++)
                assert_int_equal(jobs[i].dones, 0);
        run_until_done(f->event, jobs, ELEMENTSOF(jobs));
        run_idle(f->event);
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                assert_int_equal(jobs[i].runs, 1);
                assert_int_equal(jobs[i].dones, 1);
                assert_int_equal(jobs[i].result, 0);
                assert_int_equal(jobs[i].run_seq, i + 1);
                assert_int_equal(jobs[i].done_seq, i + 1);
        }
        /* Stored, in submission order, visible to another connection once done() came. */
        n = stored_messages(f->path, &m);
        assert_int_equal(n, ELEMENTSOF(jobs));
        for (unsigned i = 0; i < n; i++) {
                char expect[32];
                (void) snprintf(expect, sizeof expect, "job %u", i);
                assert_string_equal(m[i], expect);
        }
        strv_free(m);
}

static void test_failing_job_alone(void **state) {
        Fixture *f = *state;
        Job jobs[5] = {};
        Gate g;
        char **m = NULL;
        WriterStats st;

        jobs[1].fail_with = -EDQUOT;
        jobs[3].fail_with = -EPERM;
        jobs[4].fail_with = 7;          /* a positive result is a success and reaches done() as it is */
        gate_init(&g);
        gate_close(f->writer, &g);      /* the five land in one batch */
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                jobs[i].index = i;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        gate_open(&g);
        run_until_done(f->event, jobs, ELEMENTSOF(jobs));
        run_idle(f->event);

        assert_int_equal(jobs[0].result, 0);
        assert_int_equal(jobs[1].result, -EDQUOT);
        assert_int_equal(jobs[2].result, 0);
        assert_int_equal(jobs[3].result, -EPERM);
        assert_int_equal(jobs[4].result, 7);
        gate_destroy(&g);
        /* The failing jobs' rows were rolled back, the others stayed. */
        assert_int_equal(stored_messages(f->path, &m), 3);
        assert_string_equal(m[0], "job 0");
        assert_string_equal(m[1], "job 2");
        assert_string_equal(m[2], "job 4");
        strv_free(m);

        writer_get_stats(f->writer, &st);
        assert_int_equal(st.jobs, 6);
        assert_int_equal(st.commits, 2);        /* the gate's batch and the five */
        assert_int_equal(st.max_batch, 5);
        assert_int_equal(st.commit_failures, 0);
}

static void test_all_fail_nothing_stored(void **state) {
        Fixture *f = *state;
        Job jobs[3] = {};
        char **m = NULL;

        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                jobs[i].index = i;
                jobs[i].fail_with = -EINVAL;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        run_until_done(f->event, jobs, ELEMENTSOF(jobs));
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++)
                assert_int_equal(jobs[i].result, -EINVAL);
        assert_int_equal(stored_messages(f->path, &m), 0);
        strv_free(m);
}

static void test_batching(void **state) {
        Fixture *f = *state;
        Job *jobs = calloc(N_BATCH, sizeof *jobs);
        WriterStats st;
        char **m = NULL;
        Gate g;

        assert_non_null(jobs);
        /* Without a gate too: submit everything before the loop runs once. */
        for (unsigned i = 0; i < N_BATCH; i++) {
                jobs[i].index = i;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        run_until_done(f->event, jobs, N_BATCH);
        run_idle(f->event);
        writer_get_stats(f->writer, &st);
        print_message("ungated: %" PRIu64 " jobs in %" PRIu64 " commits, largest batch %" PRIu64 ", %" PRIu64
                      " us in COMMIT\n", st.jobs, st.commits, st.max_batch, st.commit_usec_total);
        assert_int_equal(st.jobs, N_BATCH);
        assert_true(st.commits < st.jobs);
        assert_true(st.max_batch > 1);
        for (unsigned i = 0; i < N_BATCH; i++) {
                assert_int_equal(jobs[i].dones, 1);
                assert_int_equal(jobs[i].done_seq, i + 1);
        }

        /* With the thread held: all of them in one transaction. */
        memset(jobs, 0, N_BATCH * sizeof *jobs);
        run_counter = done_counter = 0;
        gate_init(&g);
        gate_close(f->writer, &g);
        for (unsigned i = 0; i < N_BATCH; i++) {
                jobs[i].index = N_BATCH + i;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        writer_get_stats(f->writer, &st);
        assert_int_equal(st.queued, N_BATCH);
        gate_open(&g);
        run_until_done(f->event, jobs, N_BATCH);
        run_idle(f->event);
        {
                WriterStats st2;
                writer_get_stats(f->writer, &st2);
                assert_int_equal(st2.jobs, st.jobs + 1 + N_BATCH);
                assert_int_equal(st2.commits, st.commits + 2);
                assert_int_equal(st2.max_batch, N_BATCH);
                assert_int_equal(st2.queued, 0);
        }
        for (unsigned i = 0; i < N_BATCH; i++) {
                assert_int_equal(jobs[i].dones, 1);
                assert_int_equal(jobs[i].result, 0);
                assert_int_equal(jobs[i].done_seq, i + 1);
        }
        assert_int_equal(stored_messages(f->path, &m), 2 * N_BATCH);
        strv_free(m);
        free(jobs);
        gate_destroy(&g);
}

/*
 * Steady writes must not grow the WAL without bound. A PASSIVE checkpoint
 * running beside a writer that never pauses never catches up, so the WAL
 * was never restarted: 350 MB in 12 s of relay load. Keep WAL_JOBS_IN_FLIGHT
 * jobs queued (each writes 16 KiB and deletes older rows, so the database
 * itself stays small) until WAL_BYTES_TOTAL went through the writer, and
 * watch the WAL's size.
 */
#define WAL_JOB_BYTES 16384
#define WAL_BYTES_TOTAL (UINT64_C(160) * 1024 * 1024)
#define WAL_JOBS_IN_FLIGHT 64
#define WAL_MAX_BYTES (UINT64_C(48) * 1024 * 1024)      /* writer.c: checkpoints force a restart at 8,000 pages (32 MiB) */

typedef struct WalLoad {
        Writer *writer;
        uint64_t submitted, done, failed;
        uint64_t total;
} WalLoad;

static int wal_job_run(Db *db, void *userdata) {
        (void) userdata;
        if (sqlite3_exec(db->sqlite,
                         "CREATE TABLE IF NOT EXISTS scratch(b BLOB);"
                         "INSERT INTO scratch(b) VALUES (randomblob(16384));"
                         "DELETE FROM scratch WHERE rowid < last_insert_rowid() - 256;",
                         NULL, NULL, NULL) != SQLITE_OK)
                return -EIO;
        return 0;
}

static void wal_job_done(void *userdata, int r) {
        WalLoad *l = userdata;

        l->done++;
        if (r < 0)
                l->failed++;
        if (l->submitted < l->total && writer_submit(l->writer, wal_job_run, wal_job_done, l) == 0)
                l->submitted++;
}

static void test_wal_bounded(void **state) {
        Fixture *f = *state;
        WalLoad l = { .writer = f->writer, .total = WAL_BYTES_TOTAL / WAL_JOB_BYTES };
        uint64_t max_wal = 0;
        char wal[160];
        WriterStats st;

        (void) snprintf(wal, sizeof wal, "%s-wal", f->path);
        for (unsigned i = 0; i < WAL_JOBS_IN_FLIGHT; i++) {
                assert_int_equal(writer_submit(f->writer, wal_job_run, wal_job_done, &l), 0);
                l.submitted++;
        }
        /* Bounded: at most ~120 s however slow the disk. */
        for (unsigned i = 0; i < 12000 && l.done < l.total; i++) {
                struct stat sb;

                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
                if (stat(wal, &sb) == 0 && (uint64_t) sb.st_size > max_wal)
                        max_wal = (uint64_t) sb.st_size;
        }
        writer_get_stats(f->writer, &st);
        print_message("%" PRIu64 " jobs of %u bytes, %" PRIu64 " commits, %" PRIu64 " checkpoints, largest WAL %" PRIu64
                      " bytes\n", l.done, WAL_JOB_BYTES, st.commits, st.checkpoints, max_wal);
        assert_int_equal(l.done, l.total);
        assert_int_equal(l.failed, 0);
        assert_true(st.checkpoints > 0);
        assert_true(max_wal > 0);
        assert_true(max_wal <= WAL_MAX_BYTES);
}

static void test_batch_max(void **state) {
        Fixture *f = *state;
        size_t n = WRITER_BATCH_MAX + 10;
        Job *jobs = calloc(n, sizeof *jobs);
        WriterStats st;
        Gate g;

        assert_non_null(jobs);
        gate_init(&g);
        gate_close(f->writer, &g);
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        gate_open(&g);
        run_until_done(f->event, jobs, n);
        writer_get_stats(f->writer, &st);
        assert_int_equal(st.max_batch, WRITER_BATCH_MAX);
        assert_int_equal(st.commits, 3);
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(jobs[i].done_seq, i + 1);
        free(jobs);
        gate_destroy(&g);
}

static void test_queue_full(void **state) {
        Fixture *f = *state;
        Writer *w = NULL;
        Job jobs[4] = {}, extra = {};
        Gate g;
        int r;

        assert_int_equal(writer_new(f->event, f->path, 4, &w), 0);
        gate_init(&g);
        gate_close(w, &g);
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++)
                assert_int_equal(writer_submit(w, job_run, job_done, &jobs[i]), 0);
        /* Four waiting: the fifth is refused, and never runs or completes. */
        r = writer_submit(w, job_run, job_done, &extra);
        gate_open(&g);          /* before asserting: a failed test must not leave the thread held */
        assert_int_equal(r, -EAGAIN);
        run_until_done(f->event, jobs, ELEMENTSOF(jobs));
        run_idle(f->event);
        assert_int_equal(extra.runs, 0);
        assert_int_equal(extra.dones, 0);
        /* Room again. */
        assert_int_equal(writer_submit(w, job_run, job_done, &extra), 0);
        run_until_done(f->event, &extra, 1);
        assert_int_equal(extra.result, 0);
        writer_free(w);
        gate_destroy(&g);
}

static void test_stop_drains(void **state) {
        Fixture *f = *state;
        Job jobs[100] = {}, late = {};
        char **m = NULL;
        Gate g;

        gate_init(&g);
        gate_close(f->writer, &g);
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                jobs[i].index = i;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        gate_open(&g);
        /* No loop iteration: writer_stop() itself waits for the thread and dispatches. */
        writer_stop(f->writer);
        gate_destroy(&g);
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                assert_int_equal(jobs[i].runs, 1);
                assert_int_equal(jobs[i].dones, 1);
                assert_int_equal(jobs[i].result, 0);
                assert_int_equal(jobs[i].done_seq, i + 1);
        }
        assert_int_equal(stored_messages(f->path, &m), ELEMENTSOF(jobs));
        strv_free(m);

        assert_int_equal(writer_submit(f->writer, job_run, job_done, &late), -ESHUTDOWN);
        writer_stop(f->writer);         /* idempotent */
        run_idle(f->event);
        assert_int_equal(late.runs, 0);
        assert_int_equal(late.dones, 0);
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++)
                assert_int_equal(jobs[i].dones, 1);
}

static void test_commit_fails(void **state) {
        Fixture *f = *state;
        Job jobs[4] = {}, after = {};
        WriterStats st;
        char **m = NULL;
        Gate g;

        jobs[2].dangling_fk = true;     /* its RELEASE succeeds; the batch's COMMIT cannot */
        jobs[3].fail_with = -EDQUOT;
        gate_init(&g);
        gate_close(f->writer, &g);
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                jobs[i].index = i;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        gate_open(&g);
        run_until_done(f->event, jobs, ELEMENTSOF(jobs));
        run_idle(f->event);
        /* Every job of the batch gets the COMMIT's error (a foreign key: -EINVAL), nothing is stored. */
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                assert_int_equal(jobs[i].dones, 1);
                assert_int_equal(jobs[i].result, -EINVAL);
        }
        assert_int_equal(stored_messages(f->path, &m), 0);
        strv_free(m);
        writer_get_stats(f->writer, &st);
        assert_int_equal(st.commit_failures, 1);
        gate_destroy(&g);

        /* The writer goes on. */
        assert_int_equal(writer_submit(f->writer, job_run, job_done, &after), 0);
        run_until_done(f->event, &after, 1);
        assert_int_equal(after.result, 0);
        assert_int_equal(stored_messages(f->path, &m), 1);
        strv_free(m);
}

static void test_transaction_lost(void **state) {
        Fixture *f = *state;
        Job jobs[4] = {};
        char **m = NULL;
        Gate g;

        /* Like SQLite after a disk-full or I/O error: the whole transaction is gone. */
        jobs[1].raw_rollback = true;
        gate_init(&g);
        gate_close(f->writer, &g);
        for (unsigned i = 0; i < ELEMENTSOF(jobs); i++) {
                jobs[i].index = i;
                assert_int_equal(writer_submit(f->writer, job_run, job_done, &jobs[i]), 0);
        }
        gate_open(&g);
        run_until_done(f->event, jobs, ELEMENTSOF(jobs));
        /* Jobs 0 and 1 were in it and must not be reported stored; 2 and 3 go on in a new one. */
        assert_int_equal(jobs[0].result, -ECANCELED);
        assert_int_equal(jobs[1].result, -ECANCELED);
        assert_int_equal(jobs[2].result, 0);
        assert_int_equal(jobs[3].result, 0);
        assert_int_equal(stored_messages(f->path, &m), 2);
        assert_string_equal(m[0], "job 2");
        assert_string_equal(m[1], "job 3");
        strv_free(m);
        gate_destroy(&g);
}

/* A done() that submits the next job (what a relay handler does). */
typedef struct Chain {
        Writer *w;
        unsigned left, dones, failures;
        Job job;
} Chain;

static void chain_done(void *userdata, int r);

static int chain_run(Db *db, void *userdata) {
        Chain *c = userdata;
        return job_run(db, &c->job);
}

static void chain_done(void *userdata, int r) {
        Chain *c = userdata;

        /* No cmocka assertion here: a failure must not jump out of the writer's dispatch. */
        c->dones++;
        if (r < 0)
                c->failures++;
        if (c->left > 0) {
                c->left--;
                if (writer_submit(c->w, chain_run, chain_done, c) < 0)
                        c->failures++;
        }
}

static void test_submit_from_done(void **state) {
        Fixture *f = *state;
        Chain c = { .w = f->writer, .left = 9 };

        assert_int_equal(writer_submit(f->writer, chain_run, chain_done, &c), 0);
        for (unsigned i = 0; i < 2000 && c.dones < 10; i++)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        assert_int_equal(c.dones, 10);
        assert_int_equal(c.failures, 0);
        assert_int_equal(c.job.runs, 10);
}

static void test_bad_arguments(void **state) {
        Fixture *f = *state;
        Writer *w = NULL;
        char missing[160];

        assert_int_equal(writer_submit(f->writer, NULL, job_done, NULL), -EINVAL);
        assert_int_equal(writer_submit(NULL, job_run, job_done, NULL), -EINVAL);
        assert_int_equal(writer_new(NULL, f->path, 0, &w), -EINVAL);
        /* The writer never creates a store. */
        (void) snprintf(missing, sizeof missing, "%s/missing.db", f->dir);
        assert_int_equal(writer_new(f->event, missing, 0, &w), -ENOENT);
        assert_null(w);
        assert_int_equal(access(missing, F_OK), -1);
        writer_stop(NULL);
        assert_null(writer_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failing_job_alone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_all_fail_nothing_stored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_batching, setup, teardown),
                cmocka_unit_test_setup_teardown(test_batch_max, setup, teardown),
                cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_drains, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_fails, setup, teardown),
                cmocka_unit_test_setup_teardown(test_transaction_lost, setup, teardown),
                cmocka_unit_test_setup_teardown(test_submit_from_done, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wal_bounded, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
