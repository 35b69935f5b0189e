/* wcmd.c - see wcmd.h. */
#include "core/wcmd.h"

#include "core/loop.h"

/* What the poster waits on: one per wcmd_run_all() call, on its stack. */
struct wcmd_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned pending;
};

void wcmd_queue_init(struct wcmd_queue *q, struct loop *loop, void *owner)
{
    pthread_mutex_init(&q->lock, NULL);
    q->loop = loop;
    q->owner = owner;
    q->head = q->tail = NULL;
    q->closed = 0;
}

void wcmd_queue_destroy(struct wcmd_queue *q)
{
    pthread_mutex_destroy(&q->lock);
}

static void complete(struct wcmd *c)
{
    struct wcmd_wait *wt = c->wait;
    pthread_mutex_lock(&wt->lock);
    if (--wt->pending == 0) pthread_cond_signal(&wt->cond);
    pthread_mutex_unlock(&wt->lock);
}

/* Takes the whole list at once, so commands run without the queue lock
 * (a command may take other locks, e.g. a toxic slot's). */
static struct wcmd *take_all(struct wcmd_queue *q, int close)
{
    pthread_mutex_lock(&q->lock);
    struct wcmd *c = q->head;
    q->head = q->tail = NULL;
    if (close) q->closed = 1;
    pthread_mutex_unlock(&q->lock);
    return c;
}

void wcmd_run(struct wcmd_queue *q)
{
    struct wcmd *c = take_all(q, 0);
    while (c) {
        struct wcmd *next = c->next;   /* c is the queue's node: the next poster's after complete() */
        c->fn(q->owner, c->arg);
        complete(c);
        c = next;
    }
}

void wcmd_close(struct wcmd_queue *q)
{
    struct wcmd *c = take_all(q, 1);
    while (c) {
        struct wcmd *next = c->next;
        complete(c);
        c = next;
    }
}

static pthread_mutex_t posting = PTHREAD_MUTEX_INITIALIZER;

void wcmd_run_all(wcmd_queue_at *at, void *set, unsigned n, wcmd_fn *fn, void *arg)
{
    struct wcmd_wait wt = { .pending = n };
    pthread_mutex_lock(&posting);
    pthread_mutex_init(&wt.lock, NULL);
    pthread_cond_init(&wt.cond, NULL);
    for (unsigned i = 0; i < n; i++) {
        struct wcmd_queue *q = at(set, i);
        struct wcmd *c = &q->node;
        c->next = NULL;
        c->fn = fn;
        c->arg = arg;
        c->wait = &wt;
        pthread_mutex_lock(&q->lock);
        int closed = q->closed;
        if (!closed) {
            if (q->tail) q->tail->next = c;
            else q->head = c;
            q->tail = c;
        }
        pthread_mutex_unlock(&q->lock);
        if (closed) complete(c);
        else loop_wake(q->loop);
    }
    pthread_mutex_lock(&wt.lock);
    while (wt.pending) pthread_cond_wait(&wt.cond, &wt.lock);
    pthread_mutex_unlock(&wt.lock);
    pthread_cond_destroy(&wt.cond);
    pthread_mutex_destroy(&wt.lock);
    pthread_mutex_unlock(&posting);
}
