/* wcmd.h - run a function on every worker's own thread, and wait for it.
 *
 * The control side (the HTTP API thread) never touches a worker's loop,
 * listeners or sessions itself: it posts a command to each worker's queue
 * (mutex + list) and pokes the loop with loop_wake(); the worker's wake hook
 * runs the commands between event batches; the poster waits until every
 * worker has run (or dropped) its command. So everything a command reads or
 * changes is owned by the thread that runs it, and when wcmd_run_all()
 * returns, no worker still uses what the command replaced.
 *
 * A worker whose loop has ended (drain finished, or a fatal loop error)
 * closes its queue: commands posted to it complete at once without running,
 * so the API can never wait for a thread that is gone.
 */
#ifndef FERRY_WCMD_H
#define FERRY_WCMD_H

#include <pthread.h>

struct loop;

/* Runs on the queue's thread; owner is what the queue was made for (the
 * worker: wcmd itself knows nothing of workers). */
typedef void wcmd_fn(void *owner, void *arg);

struct wcmd_wait;

struct wcmd {
    struct wcmd *next;
    wcmd_fn *fn;
    void *arg;
    struct wcmd_wait *wait;
};

/* Posters take turns (wcmd_run_all holds a process-wide lock until every
 * worker is done), so a queue carries at most one command at a time: its
 * own node, and posting never allocates or fails. */
struct wcmd_queue {
    pthread_mutex_t lock;
    struct loop *loop;             /* poked with loop_wake() after a post */
    void *owner;                   /* passed to every command */
    struct wcmd *head, *tail;
    struct wcmd node;
    int closed;
};

void wcmd_queue_init(struct wcmd_queue *q, struct loop *loop, void *owner);
/* The queue must be empty (closed and drained). */
void wcmd_queue_destroy(struct wcmd_queue *q);

/* Worker thread: runs every queued command (the wake hook calls this). */
void wcmd_run(struct wcmd_queue *q);
/* Worker thread, after its loop ended: completes queued and future commands
 * without running them. */
void wcmd_close(struct wcmd_queue *q);

/* The i-th of a set of queues (the caller's array of workers, say). */
typedef struct wcmd_queue *wcmd_queue_at(void *set, unsigned i);

/* Any thread but a worker's: runs fn(owner, arg) on each of the n queues'
 * threads, concurrently, and returns once all have run or dropped it. */
void wcmd_run_all(wcmd_queue_at *at, void *set, unsigned n, wcmd_fn *fn, void *arg);

#endif
