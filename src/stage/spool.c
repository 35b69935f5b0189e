/* spool.c - see spool.h. */
#include "stage/spool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/loop.h"
#include "obs/log.h"
#include "obs/metrics.h"

struct spool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *fill, *spare;     /* fill: producers append; spare: the writer's */
    size_t fill_len, cap;
    uint64_t dropped;          /* under mu */
    int stop;
    pthread_t th;
    const struct spool_ops *ops;
    void *ctx;
    char name[300];
};

/* Records are framed [u32 length][bytes] in the buffers. */
#define FRAME 4

static void consume(struct spool *sp, uint8_t *b, size_t len)
{
    for (size_t off = 0; off + FRAME <= len;) {
        uint32_t n;
        memcpy(&n, b + off, FRAME);
        sp->ops->record(sp->ctx, b + off + FRAME, n);
        off += FRAME + n;
    }
    if (sp->ops->batch_done) sp->ops->batch_done(sp->ctx);
}

static void *writer(void *arg)
{
    struct spool *sp = arg;
    uint64_t logged = 0, last_log = 0;
    pthread_mutex_lock(&sp->mu);
    for (;;) {
        while (!sp->fill_len && !sp->stop) {
            /* Wakes once a second even when idle, so a burst of drops is
             * reported soon after it ends. */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            if (pthread_cond_timedwait(&sp->cv, &sp->mu, &until) == ETIMEDOUT) break;
        }
        if (!sp->fill_len && sp->stop) break;
        uint8_t *b = sp->fill;
        size_t len = sp->fill_len;
        uint64_t dropped = sp->dropped;
        sp->fill = sp->spare;
        sp->spare = b;
        sp->fill_len = 0;
        pthread_mutex_unlock(&sp->mu);

        if (len) consume(sp, b, len);
        if (dropped != logged && clock_now_ms() / 1000 != last_log) {
            log_warn("%s: %llu records dropped (the writer is behind), %llu in total", sp->name,
                     (unsigned long long)(dropped - logged), (unsigned long long)dropped);
            logged = dropped;
            last_log = clock_now_ms() / 1000;
        }
        pthread_mutex_lock(&sp->mu);
    }
    pthread_mutex_unlock(&sp->mu);
    return NULL;
}

struct spool *spool_new(size_t cap, const struct spool_ops *ops, void *ctx, const char *name,
                        char *err, size_t errlen)
{
    struct spool *sp = calloc(1, sizeof(*sp));
    if (!sp || !(sp->fill = malloc(cap)) || !(sp->spare = malloc(cap))) {
        snprintf(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    sp->cap = cap;
    sp->ops = ops;
    sp->ctx = ctx;
    snprintf(sp->name, sizeof(sp->name), "%s", name);
    pthread_mutex_init(&sp->mu, NULL);
    pthread_cond_init(&sp->cv, NULL);
    int e = pthread_create(&sp->th, NULL, writer, sp);
    if (e) {
        snprintf(err, errlen, "%s: cannot start its writer thread: %s", name, strerror(e));
        pthread_cond_destroy(&sp->cv);
        pthread_mutex_destroy(&sp->mu);
        goto fail;
    }
    return sp;
fail:
    if (sp) {
        free(sp->fill);
        free(sp->spare);
    }
    free(sp);
    return NULL;
}

int spool_put(struct spool *sp, const struct spool_part *parts, int nparts)
{
    size_t need = FRAME;
    for (int i = 0; i < nparts; i++) need += parts[i].n;
    pthread_mutex_lock(&sp->mu);
    if (need - FRAME > UINT32_MAX || sp->cap - sp->fill_len < need) {
        sp->dropped++;
        pthread_mutex_unlock(&sp->mu);
        metrics_tap_dropped((enum metrics_tap_output)sp->ops->metrics_output);
        return -1;
    }
    int was_empty = sp->fill_len == 0;
    uint8_t *o = sp->fill + sp->fill_len;
    uint32_t n = (uint32_t)(need - FRAME);
    memcpy(o, &n, FRAME);
    o += FRAME;
    for (int i = 0; i < nparts; i++) {
        if (parts[i].n) memcpy(o, parts[i].p, parts[i].n);
        o += parts[i].n;
    }
    sp->fill_len += need;
    pthread_mutex_unlock(&sp->mu);
    /* Only the first record of a batch wakes the writer: while it writes,
     * the others pile up and go in its next batch. */
    if (was_empty) pthread_cond_signal(&sp->cv);
    return 0;
}

void spool_count_drop(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    sp->dropped++;
    pthread_mutex_unlock(&sp->mu);
    metrics_tap_dropped((enum metrics_tap_output)sp->ops->metrics_output);
}

uint64_t spool_close(struct spool *sp)
{
    if (!sp) return 0;
    pthread_mutex_lock(&sp->mu);
    sp->stop = 1;
    pthread_cond_signal(&sp->cv);
    pthread_mutex_unlock(&sp->mu);
    pthread_join(sp->th, NULL);
    uint64_t dropped = sp->dropped;
    pthread_cond_destroy(&sp->cv);
    pthread_mutex_destroy(&sp->mu);
    free(sp->fill);
    free(sp->spare);
    free(sp);
    return dropped;
}
