/* buffer.h - linear byte buffers lent by a per-thread pool.
 *
 * A session direction holds a buffer only while bytes are in flight (STYLE
 * habit 5): taken on the first read, given back as soon as it drains, so an
 * idle connection costs no buffer memory. Invariant: head <= tail <= cap;
 * bytes in flight are data[head, tail). The pool is per thread: no locks.
 */
#ifndef FERRY_BUFFER_H
#define FERRY_BUFFER_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint32_t head, tail, cap;
    union {
        struct buf *next_free;   /* while parked in the pool */
        uint32_t reserved;
    } u;
    uint8_t data[];
};

struct buf_pool {
    struct buf *free;
    size_t nfree, max_free;      /* cached buffers are kept up to max_free */
    uint32_t bufsize;
    size_t in_use;               /* lent out now (for metrics and tests) */
};

void buf_pool_init(struct buf_pool *p, uint32_t bufsize, size_t max_free);
void buf_pool_destroy(struct buf_pool *p);
/* NULL when out of memory. */
struct buf *buf_get(struct buf_pool *p);
void buf_put(struct buf_pool *p, struct buf *b);
/* Gives *slot back if it holds no bytes: a direction never sits on an empty
 * buffer (STYLE habit 5). */
void buf_put_if_empty(struct buf_pool *p, struct buf **slot);

static inline uint32_t buf_len(const struct buf *b) { return b->tail - b->head; }
static inline int buf_empty(const struct buf *b) { return b->tail == b->head; }
static inline uint8_t *buf_rptr(struct buf *b) { return b->data + b->head; }
static inline uint8_t *buf_wptr(struct buf *b) { return b->data + b->tail; }

/* Room at the tail, after moving data to the front if that makes more. */
uint32_t buf_room(struct buf *b);
static inline void buf_produced(struct buf *b, uint32_t n) { b->tail += n; }
static inline void buf_consumed(struct buf *b, uint32_t n)
{
    b->head += n;
    if (b->head == b->tail) b->head = b->tail = 0;
}
/* Appends up to len bytes; returns how many fit. */
uint32_t buf_append(struct buf *b, const void *src, uint32_t len);
/* Puts len bytes in front of the bytes in flight: 0, or -1 (nothing
 * changed) if they do not fit beside them. */
int buf_prepend(struct buf *b, const void *src, uint32_t len);

#endif
