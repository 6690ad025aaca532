/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store's writer thread (group commit); the contract is in writer.h.
 *
 * Jobs move through three lists, each a FIFO:
 *   queue    submitted, waiting for the thread            (under lock)
 *   done     run and committed (or failed), for the loop  (under lock)
 *   dispatch taken from done by the loop, done() pending  (loop thread only)
 * The thread appends to done and then adds 1 to the eventfd; the loop reads
 * (resets) the eventfd first and takes the done list afterwards, so a batch
 * finished after the read leaves the counter non-zero and wakes the loop
 * again: no completion can wait for a wake-up that never comes (at worst a
 * wake-up finds an empty list). A job is freed on the loop right before its
 * done() is called, and the thread never touches a job after handing it over.
 *
 * The writer uses the store's internals (db-internal.h) for two things the
 * public API does not offer: the per-job savepoint (DbTxn nests inside the
 * batch's BEGIN IMMEDIATE) and noticing that SQLite rolled the whole
 * transaction back by itself (disk full, I/O error) in the middle of a batch.
 *
 * Checkpoints are mostly not the writer's: SQLite's automatic checkpoint
 * would run inside a COMMIT (about one in ten batches, milliseconds each,
 * measured as the main source of the relay's send->ack tail). The writer's
 * connection reports the WAL's size through a WAL hook instead (which also
 * switches its automatic checkpoint off), and a second thread with its own
 * connection runs PASSIVE checkpoints, which never block the writer.
 *
 * A PASSIVE checkpoint copies the frames that exist when it starts; under
 * steady writes new ones arrive meanwhile, so it never catches up, and the
 * WAL restarts from its beginning only after a checkpoint that left nothing
 * behind. Left alone, the WAL grew without bound (350 MB in 12 s of relay
 * load), every commit extended the file, and the checkpointer ran after
 * every commit, its syncs competing with the writer's. So once the
 * checkpointer has copied the bulk, the writer copies the rest itself,
 * between batches, after handing the finished batch to the loop: only the
 * frames written during that pass, on a connection with no transaction
 * open, so nothing is left behind and the next batch rewrites the WAL from
 * its start (the file keeps its size and is reused). The checkpointer does
 * not start another pass before the writer has finished the last one,
 * unless the WAL passes WRITER_CHECKPOINT_PAGES_MAX; and it runs up to
 * WRITER_CHECKPOINT_PASSES_MAX passes in a row while more than
 * WRITER_CHECKPOINT_FINISH_MAX frames arrived during the last one, so the
 * writer (with every send waiting) copies little: its two syncs remain.
 * Statement journals (one per job's savepoint) are kept in memory: written
 * to a temporary file they were most of the writer's disk writes.
 */
#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>

#include "db-internal.h"
#include "log.h"
#include "writer.h"

typedef struct WriterJob WriterJob;

struct WriterJob {
        WriterJob *next;
        WriterRunFn run;
        WriterDoneFn done;
        void *userdata;
        int result;
};

typedef struct WriterList {
        WriterJob *head, *tail;
} WriterList;

struct Writer {
        pthread_mutex_t lock;
        pthread_cond_t work;            /* a job was queued, or stopping */
        pthread_t thread;
        bool thread_running;            /* created and not joined yet */
        bool stopping;                  /* under lock: writer_submit() refuses, the thread drains and exits */

        Db *db;                         /* the thread's (after writer_new() returned) */
        size_t queue_max;

        WriterList queue;               /* under lock */
        size_t n_queued;                /* under lock */
        WriterList done;                /* under lock */
        WriterList dispatch;            /* loop thread only */
        unsigned dispatching;           /* loop thread only: depth of writer_dispatch() */

        int event_fd;
        sd_event_source *event_source;

        WriterStats stats;              /* under lock (queued is computed) */

        /* The checkpointer (under lock unless noted). */
        Db *ckpt_db;                    /* the checkpointer thread's */
        pthread_t ckpt_thread;
        bool ckpt_running;              /* created and not joined yet (writer_new/stop only) */
        pthread_cond_t ckpt_work;       /* the WAL grew past WRITER_CHECKPOINT_PAGES, or stopping */
        int wal_pages;                  /* as the writer's last commit left it */
        bool ckpt_stopping;
        bool ckpt_busy;                 /* a pass is running on the checkpointer's connection */
        uint64_t ckpt_passes;           /* passes the checkpointer completed */
        uint64_t ckpt_passes_seen;      /* ckpt_passes when the writer last finished one */
};

/* WAL pages (4 KiB by default) after which a checkpoint is started. */
#define WRITER_CHECKPOINT_PAGES 1000
/* The writer finishes a checkpoint only once at most this many frames are left (or after PASSES_MAX passes). */
#define WRITER_CHECKPOINT_FINISH_MAX 128
#define WRITER_CHECKPOINT_PASSES_MAX 4
/* Past this the checkpointer and the writer run passes without waiting for each other. */
#define WRITER_CHECKPOINT_PAGES_MAX (8 * WRITER_CHECKPOINT_PAGES)
/* Even without news from the writer (the loop's connection also commits). */
#define WRITER_CHECKPOINT_INTERVAL_SEC 10

static void writer_list_append(WriterList *l, WriterJob *first, WriterJob *last) {
        last->next = NULL;
        if (l->tail)
                l->tail->next = first;
        else
                l->head = first;
        l->tail = last;
}

static uint64_t monotonic_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void writer_fail_range(WriterJob *first, WriterJob *end, int r) {
        for (WriterJob *j = first; j != end; j = j->next)
                j->result = r;
}

/*
 * Run n jobs starting at first. Normally one transaction; if SQLite rolls a
 * transaction back by itself in the middle, the jobs of that transaction
 * fail and the rest continue in a new one.
 */
static void writer_run_batch(Writer *w, WriterJob *first, size_t n) {
        WriterJob *j = first;
        size_t i = 0;
        uint64_t commits = 0, failures = 0, sync_usec = 0;

        while (i < n) {
                WriterJob *txn_first = j;
                bool any_ok = false, lost = false;
                uint64_t t0;
                int r;

                r = db_begin(w->db);
                if (r < 0) {
                        log_error_errno(r, "Writer: cannot begin a transaction, failing %zu jobs: %m (%s)", n - i,
                                        db_last_error(w->db));
                        writer_fail_range(j, NULL, r);
                        failures++;
                        break;
                }

                for (; i < n; i++, j = j->next) {
                        DbTxn txn = {};
                        int run_r = 0;

                        r = db_txn_begin(w->db, &txn);
                        if (r >= 0) {
                                r = run_r = j->run(w->db, j->userdata);
                                if (r >= 0 && !sqlite3_get_autocommit(w->db->sqlite))
                                        r = db_txn_commit(&txn);
                                if (r >= 0)
                                        r = run_r;      /* a job's positive result reaches its done() */
                        }
                        j->result = r;
                        db_txn_abort(&txn);     /* no-op after a successful RELEASE */

                        if (sqlite3_get_autocommit(w->db->sqlite)) {
                                /*
                                 * SQLite rolled back the whole transaction (disk full, I/O error):
                                 * nothing of it is stored. Its jobs fail with the cause, if the
                                 * job that was running saw it.
                                 */
                                r = run_r < 0 ? run_r : -ECANCELED;
                                log_error_errno(r, "Writer: the transaction was rolled back by SQLite, failing its "
                                                "jobs: %m (%s)", db_last_error(w->db));
                                writer_fail_range(txn_first, j->next, r);
                                (void) db_rollback(w->db);      /* only clears the handle's state */
                                failures++;
                                lost = true;
                                i++;
                                j = j->next;
                                break;
                        }
                        if (r >= 0)
                                any_ok = true;
                }
                if (lost)
                        continue;

                if (!any_ok) {
                        /* Every job failed and rolled itself back: nothing to make durable. */
                        r = db_rollback(w->db);
                        if (r < 0)
                                log_warning_errno(r, "Writer: cannot roll back an empty batch: %m (%s)",
                                                  db_last_error(w->db));
                        continue;
                }

                t0 = monotonic_usec();
                r = db_commit(w->db);
                sync_usec += monotonic_usec() - t0;
                if (r < 0) {
                        log_error_errno(r, "Writer: COMMIT failed, nothing of this batch is stored: %m (%s)",
                                        db_last_error(w->db));
                        (void) db_rollback(w->db);
                        writer_fail_range(txn_first, j, r);
                        failures++;
                } else
                        commits++;
        }

        (void) pthread_mutex_lock(&w->lock);
        w->stats.jobs += n;
        w->stats.commits += commits;
        w->stats.commit_failures += failures;
        w->stats.commit_usec_total += sync_usec;
        (void) pthread_mutex_unlock(&w->lock);
}

/* Under lock: the WAL is long and the checkpointer has copied the bulk of it (see the top of this file). */
static bool writer_should_finish_checkpoint(Writer *w) {
        if (w->ckpt_busy || w->wal_pages < WRITER_CHECKPOINT_PAGES)
                return false;
        return w->ckpt_passes > w->ckpt_passes_seen || w->wal_pages >= WRITER_CHECKPOINT_PAGES_MAX;
}

/* Writer thread, outside any transaction: copy what the checkpointer left, so the next write restarts the WAL. */
static void writer_finish_checkpoint(Writer *w) {
        int rc, log_pages = 0, done_pages = 0;

        rc = sqlite3_wal_checkpoint_v2(w->db->sqlite, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages, &done_pages);
        if (rc == SQLITE_BUSY)
                return;         /* the checkpointer started a pass meanwhile: after the next batch */
        if (rc != SQLITE_OK) {
                log_warning("Writer: checkpoint failed: %s", sqlite3_errmsg(w->db->sqlite));
                return;
        }
        (void) pthread_mutex_lock(&w->lock);
        w->stats.checkpoints++;
        if (done_pages == log_pages)
                w->wal_pages = 0;       /* nothing left: the next commit starts the WAL again */
        (void) pthread_mutex_unlock(&w->lock);
}

static void *writer_thread(void *userdata) {
        Writer *w = userdata;

        (void) pthread_mutex_lock(&w->lock);
        for (;;) {
                WriterJob *first, *last;
                uint64_t one = 1;
                size_t n = 0;

                while (!w->stopping && !w->queue.head)
                        (void) pthread_cond_wait(&w->work, &w->lock);
                if (!w->queue.head)
                        break;  /* stopping, and everything queued is done */

                /* Everything waiting, up to WRITER_BATCH_MAX, in submission order. */
                first = last = w->queue.head;
                n = 1;
                while (n < WRITER_BATCH_MAX && last->next) {
                        last = last->next;
                        n++;
                }
                w->queue.head = last->next;
                if (!w->queue.head)
                        w->queue.tail = NULL;
                last->next = NULL;
                w->n_queued -= n;
                if (n > w->stats.max_batch)
                        w->stats.max_batch = n;
                (void) pthread_mutex_unlock(&w->lock);

                writer_run_batch(w, first, n);

                (void) pthread_mutex_lock(&w->lock);
                writer_list_append(&w->done, first, last);
                /* From here on the jobs belong to the loop. */
                if (write(w->event_fd, &one, sizeof one) < 0)
                        log_error_errno(negative_errno(), "Writer: cannot wake the loop: %m");

                if (writer_should_finish_checkpoint(w)) {
                        w->ckpt_passes_seen = w->ckpt_passes;
                        (void) pthread_mutex_unlock(&w->lock);
                        writer_finish_checkpoint(w);
                        (void) pthread_mutex_lock(&w->lock);
                }
        }
        (void) pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Call done() for every finished job, in submission order. Loop thread only. */
static void writer_dispatch(Writer *w) {
        WriterList l;

        (void) pthread_mutex_lock(&w->lock);
        l = w->done;
        w->done = (WriterList) {};
        (void) pthread_mutex_unlock(&w->lock);
        /* Completions taken by an outer call (a done() that stops the writer) go first. */
        if (l.head)
                writer_list_append(&w->dispatch, l.head, l.tail);

        w->dispatching++;
        while (w->dispatch.head) {
                WriterJob *j = w->dispatch.head;
                WriterDoneFn done = j->done;
                void *userdata = j->userdata;
                int result = j->result;

                w->dispatch.head = j->next;
                if (!w->dispatch.head)
                        w->dispatch.tail = NULL;
                free(j);
                if (done)
                        done(userdata, result);
        }
        w->dispatching--;
}

static int writer_on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Writer *w = userdata;
        uint64_t n;

        /* Reset the counter before taking the list (see the top of this file). */
        if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
                log_warning_errno(negative_errno(), "Writer: cannot read the eventfd: %m");
        writer_dispatch(w);
        return 0;
}

/* Called by SQLite on the writer thread after each commit on its connection. */
static int writer_wal_hook(void *userdata, sqlite3 *sqlite, const char *name, int pages) {
        Writer *w = userdata;

        (void) sqlite;
        (void) name;
        (void) pthread_mutex_lock(&w->lock);
        w->wal_pages = pages;
        if (pages >= WRITER_CHECKPOINT_PAGES)
                (void) pthread_cond_signal(&w->ckpt_work);
        (void) pthread_mutex_unlock(&w->lock);
        return SQLITE_OK;
}

static void *writer_checkpoint_thread(void *userdata) {
        Writer *w = userdata;

        unsigned again = 0;

        (void) pthread_mutex_lock(&w->lock);
        for (;;) {
                struct timespec deadline;
                int rc, log_pages = 0, done_pages = 0;

                (void) clock_gettime(CLOCK_REALTIME, &deadline);
                deadline.tv_sec += WRITER_CHECKPOINT_INTERVAL_SEC;
                /* After a pass, the writer finishes it first (see the top of this file). */
                while (!w->ckpt_stopping && again == 0 &&
                       (w->wal_pages < WRITER_CHECKPOINT_PAGES ||
                        (w->ckpt_passes > w->ckpt_passes_seen && w->wal_pages < WRITER_CHECKPOINT_PAGES_MAX)))
                        if (pthread_cond_timedwait(&w->ckpt_work, &w->lock, &deadline) == ETIMEDOUT)
                                break;
                if (w->ckpt_stopping)
                        break;
                w->wal_pages = 0;
                w->ckpt_busy = true;
                (void) pthread_mutex_unlock(&w->lock);

                rc = sqlite3_wal_checkpoint_v2(w->ckpt_db->sqlite, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages,
                                               &done_pages);
                if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                        log_warning("Writer: checkpoint failed: %s", sqlite3_errmsg(w->ckpt_db->sqlite));

                (void) pthread_mutex_lock(&w->lock);
                w->ckpt_busy = false;
                w->stats.checkpoints++;
                /*
                 * Frames written during the pass are what the writer will copy while
                 * every send waits: if there are many, copy them here first.
                 */
                if (rc == SQLITE_OK && w->wal_pages - done_pages > WRITER_CHECKPOINT_FINISH_MAX &&
                    again < WRITER_CHECKPOINT_PASSES_MAX) {
                        again++;
                        continue;
                }
                again = 0;
                if (rc == SQLITE_OK)
                        w->ckpt_passes++;
        }
        (void) pthread_mutex_unlock(&w->lock);
        return NULL;
}

void writer_stop(Writer *w) {
        if (!w)
                return;
        (void) pthread_mutex_lock(&w->lock);
        w->stopping = true;
        (void) pthread_cond_signal(&w->work);
        (void) pthread_mutex_unlock(&w->lock);

        if (w->thread_running) {
                (void) pthread_join(w->thread, NULL);
                w->thread_running = false;
        }
        /* The thread is gone: whatever it finished is on the done list. */
        writer_dispatch(w);

        (void) pthread_mutex_lock(&w->lock);
        w->ckpt_stopping = true;
        (void) pthread_cond_signal(&w->ckpt_work);
        (void) pthread_mutex_unlock(&w->lock);
        if (w->ckpt_running) {
                (void) pthread_join(w->ckpt_thread, NULL);
                w->ckpt_running = false;
        }
}

Writer *writer_free(Writer *w) {
        if (!w)
                return NULL;
        /* Freeing from inside a done() would pull the lists from under writer_dispatch(). */
        assert(w->dispatching == 0);
        writer_stop(w);
        sd_event_source_disable_unref(w->event_source);
        safe_close(w->event_fd);
        db_close(w->db);
        db_close(w->ckpt_db);
        (void) pthread_cond_destroy(&w->ckpt_work);
        (void) pthread_cond_destroy(&w->work);
        (void) pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

/* A single-value PRAGMA as text, for the durability check. */
static int writer_pragma(Db *db, const char *sql, char *buf, size_t size) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        const unsigned char *t;
        int rc;

        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return db_error(db, rc);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return db_error(db, rc == SQLITE_DONE ? SQLITE_NOTFOUND : rc);
        t = sqlite3_column_text(stmt, 0);
        if (!t)
                return -ENOMEM;
        (void) snprintf(buf, size, "%s", (const char *) t);
        return 0;
}

/*
 * An acknowledged commit must be on disk: WAL with synchronous = FULL (2).
 * db_open() sets both; refuse to run on a handle where that did not hold.
 */
static int writer_check_durability(Db *db, const char *path) {
        char mode[16], sync[16];
        int r;

        r = writer_pragma(db, "PRAGMA journal_mode", mode, sizeof mode);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot read the journal mode of %s: %m (%s)", path,
                                       db_last_error(db));
        r = writer_pragma(db, "PRAGMA synchronous", sync, sizeof sync);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot read the synchronous setting of %s: %m (%s)", path,
                                       db_last_error(db));
        if (strcasecmp(mode, "wal") != 0 || !streq(sync, "2"))
                return log_error_errno(-EOPNOTSUPP,
                                       "Writer: %s is in journal mode %s with synchronous=%s, not WAL with FULL (2); "
                                       "refusing to acknowledge commits that may not be durable.",
                                       path, mode, sync);
        return 0;
}

int writer_new(sd_event *event, const char *db_path, size_t queue_max, Writer **ret) {
        _cleanup_(writer_freep) Writer *w = NULL;
        sigset_t all, saved;
        int r;

        if (!event || !db_path || !ret)
                return -EINVAL;

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->event_fd = -EBADF;
        w->queue_max = queue_max > 0 ? queue_max : WRITER_QUEUE_MAX_DEFAULT;
        (void) pthread_mutex_init(&w->lock, NULL);
        (void) pthread_cond_init(&w->work, NULL);
        (void) pthread_cond_init(&w->ckpt_work, NULL);

        r = db_open(db_path, 0, &w->db);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot open the store %s: %m (%s)", db_path, db_last_error(NULL));
        r = db_set_busy_timeout(w->db, DB_BUSY_TIMEOUT_USEC_DEFAULT);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot set the busy timeout: %m (%s)", db_last_error(w->db));
        r = writer_check_durability(w->db, db_path);
        if (r < 0)
                return r;
        if (sqlite3_exec(w->db->sqlite, "PRAGMA temp_store = MEMORY", NULL, NULL, NULL) != SQLITE_OK)
                return log_error_errno(-EIO, "Writer: cannot keep statement journals in memory: %s",
                                       db_last_error(w->db));
        /* Replaces the automatic checkpoint of this connection (see the top of this file). */
        (void) sqlite3_wal_hook(w->db->sqlite, writer_wal_hook, w);

        r = db_open(db_path, 0, &w->ckpt_db);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot open the store %s for checkpoints: %m (%s)", db_path,
                                       db_last_error(NULL));

        w->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->event_fd < 0)
                return log_error_errno(negative_errno(), "Writer: cannot create an eventfd: %m");
        r = sd_event_add_io(event, &w->event_source, w->event_fd, EPOLLIN, writer_on_event, w);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot watch the eventfd: %m");
        (void) sd_event_source_set_description(w->event_source, "writer");

        /* Signals are the loop's business: the thread starts with all of them blocked. */
        sigfillset(&all);
        r = -pthread_sigmask(SIG_SETMASK, &all, &saved);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot block signals: %m");
        r = -pthread_create(&w->thread, NULL, writer_thread, w);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot start the thread: %m");
        w->thread_running = true;

        (void) pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&w->ckpt_thread, NULL, writer_checkpoint_thread, w);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                return log_error_errno(r, "Writer: cannot start the checkpoint thread: %m");
        w->ckpt_running = true;

        *ret = TAKE_PTR(w);
        return 0;
}

int writer_submit(Writer *w, WriterRunFn run, WriterDoneFn done, void *userdata) {
        WriterJob *j;

        if (!w || !run)
                return -EINVAL;
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (WriterJob) {
                .run = run,
                .done = done,
                .userdata = userdata,
        };

        (void) pthread_mutex_lock(&w->lock);
        if (w->stopping) {
                (void) pthread_mutex_unlock(&w->lock);
                free(j);
                return -ESHUTDOWN;
        }
        if (w->n_queued >= w->queue_max) {
                (void) pthread_mutex_unlock(&w->lock);
                free(j);
                return -EAGAIN;
        }
        writer_list_append(&w->queue, j, j);
        w->n_queued++;
        (void) pthread_cond_signal(&w->work);
        (void) pthread_mutex_unlock(&w->lock);
        return 0;
}

void writer_get_stats(Writer *w, WriterStats *ret) {
        if (!ret)
                return;
        if (!w) {
                *ret = (WriterStats) {};
                return;
        }
        (void) pthread_mutex_lock(&w->lock);
        *ret = w->stats;
        ret->queued = w->n_queued;
        (void) pthread_mutex_unlock(&w->lock);
}
