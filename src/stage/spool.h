/* spool.h - hands records from the worker threads to one writer thread,
 * so that a slow disk never blocks an event loop.
 *
 * Two buffers of a fixed size: producers copy records into the one being
 * filled, under a mutex held only for the memcpy; the writer thread swaps
 * the buffers and consumes the full one without the lock. When the filling
 * buffer has no room (the writer is behind), the record is dropped and
 * counted: capture loses records, never traffic. The writer logs drops at
 * most once per second.
 */
#ifndef FERRY_SPOOL_H
#define FERRY_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct spool;

struct spool_part {
    const void *p;
    size_t n;
};

struct spool_ops {
    /* Writer thread: one record, as put (the parts concatenated); the
     * consumer may modify it in place. */
    void (*record)(void *ctx, uint8_t *rec, size_t len);
    /* Writer thread: after each batch (flush the file). */
    void (*batch_done)(void *ctx);
    /* enum metrics_tap_output: where drops are counted. */
    int metrics_output;
};

/* cap: bytes of each of the two buffers. name: for log lines ("capture
 * FILE"). NULL with a reason if the thread cannot start. */
struct spool *spool_new(size_t cap, const struct spool_ops *ops, void *ctx, const char *name,
                        char *err, size_t errlen);
/* Any thread: appends one record made of the parts. 0, or -1 if it was
 * dropped (no room). */
int spool_put(struct spool *sp, const struct spool_part *parts, int nparts);
/* Counts a record the caller lost for its own reasons (e.g. a bounded
 * pre-filter buffer), so one total is reported. */
void spool_count_drop(struct spool *sp);
/* Consumes what is queued, stops the thread and frees. Returns the number
 * of records dropped over the spool's life. */
uint64_t spool_close(struct spool *sp);

#endif
