/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The store's single writer thread (group commit). Loop code never waits
 * for a durable commit: it submits a job and gets its completion later, on
 * the loop, through an eventfd watched by sd-event.
 *
 * The thread owns its own Db handle on the same file (WAL; synchronous =
 * FULL, so a COMMIT that returned is on disk). It takes every queued job
 * (at most WRITER_BATCH_MAX), opens one transaction, runs each job's run()
 * in a savepoint of its own (a job that returns < 0 is rolled back alone,
 * the others stay), commits once, and then hands the completions to the
 * loop, in submission order: done(userdata, r) with r = run()'s result, or
 * the commit's error for every job of a batch whose COMMIT failed (then
 * nothing of that batch is stored). done() is called exactly once per
 * accepted job, on the loop thread; run() only ever on the writer thread,
 * so userdata belongs to the writer from submit until done.
 *
 * WAL checkpoints run on a second thread of the writer's, never inside a
 * COMMIT (writer.c says why).
 *
 * Jobs that only read (FETCH, KEYS_COUNT, stats) go through the same queue:
 * they see every write acknowledged before them, and cost no sync.
 */

#include <systemd/sd-event.h>

#include "db.h"

typedef struct Writer Writer;

#define WRITER_BATCH_MAX 1024
#define WRITER_QUEUE_MAX_DEFAULT 65536

/* Runs on the writer thread inside the batch's transaction. */
typedef int (*WriterRunFn)(Db *db, void *userdata);
/* Runs on the loop thread after the batch committed (or failed). May be NULL. */
typedef void (*WriterDoneFn)(void *userdata, int r);

/*
 * Open db_path (it must exist: the manager created and migrated it) and
 * start the thread; completions are dispatched on event. queue_max bounds
 * the jobs waiting (0: WRITER_QUEUE_MAX_DEFAULT).
 */
int writer_new(sd_event *event, const char *db_path, size_t queue_max, Writer **ret);

/*
 * Queue a job. -EAGAIN when queue_max jobs are waiting (the caller answers
 * BUSY: never a silent drop), -ESHUTDOWN after writer_stop(). On error
 * neither run nor done is called.
 */
int writer_submit(Writer *w, WriterRunFn run, WriterDoneFn done, void *userdata);

/*
 * Stop taking jobs, let the thread finish every queued one (they are
 * committed), join it, and dispatch the remaining completions. Idempotent.
 */
void writer_stop(Writer *w);
/* writer_stop(), then free. NULL-safe. */
Writer *writer_free(Writer *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(Writer *, writer_free);

typedef struct WriterStats {
        uint64_t jobs;                  /* run */
        uint64_t commits;               /* transactions committed */
        uint64_t commit_failures;
        uint64_t max_batch;             /* largest batch so far */
        size_t queued;                  /* waiting now */
        uint64_t commit_usec_total;     /* time spent in COMMIT (sync) */
        uint64_t checkpoints;           /* WAL checkpoints run (by the checkpoint thread, never in a COMMIT) */
} WriterStats;
void writer_get_stats(Writer *w, WriterStats *ret);
