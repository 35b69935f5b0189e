/* buffer.c - see buffer.h. */
#include "buf/buffer.h"

#include <stdlib.h>
#include <string.h>

void buf_pool_init(struct buf_pool *p, uint32_t bufsize, size_t max_free)
{
    memset(p, 0, sizeof(*p));
    p->bufsize = bufsize;
    p->max_free = max_free;
}

void buf_pool_destroy(struct buf_pool *p)
{
    while (p->free) {
        struct buf *b = p->free;
        p->free = b->u.next_free;
        free(b);
    }
    p->nfree = 0;
}

struct buf *buf_get(struct buf_pool *p)
{
    struct buf *b = p->free;
    if (b) {
        p->free = b->u.next_free;
        p->nfree--;
    } else {
        b = malloc(sizeof(*b) + p->bufsize);
        if (!b) return NULL;
        b->cap = p->bufsize;
    }
    b->head = b->tail = 0;
    p->in_use++;
    return b;
}

void buf_put(struct buf_pool *p, struct buf *b)
{
    if (!b) return;
    p->in_use--;
    if (p->nfree >= p->max_free || b->cap != p->bufsize) {
        free(b);
        return;
    }
    b->u.next_free = p->free;
    p->free = b;
    p->nfree++;
}

void buf_put_if_empty(struct buf_pool *p, struct buf **slot)
{
    if (!*slot || !buf_empty(*slot)) return;
    buf_put(p, *slot);
    *slot = NULL;
}

uint32_t buf_room(struct buf *b)
{
    if (b->tail == b->cap && b->head > 0) {
        memmove(b->data, b->data + b->head, b->tail - b->head);
        b->tail -= b->head;
        b->head = 0;
    }
    return b->cap - b->tail;
}

uint32_t buf_append(struct buf *b, const void *src, uint32_t len)
{
    if (len == 0) return 0;      /* src may be NULL then; memcpy(NULL, 0) is UB */
    uint32_t room = buf_room(b);
    if (len > room) len = room;
    memcpy(buf_wptr(b), src, len);
    b->tail += len;
    return len;
}

int buf_prepend(struct buf *b, const void *src, uint32_t len)
{
    if (len == 0) return 0;
    if (len > b->head) {
        uint32_t n = buf_len(b);
        if (len > b->cap - n) return -1;
        memmove(b->data + len, buf_rptr(b), n);
        b->head = len;
        b->tail = len + n;
    }
    b->head -= len;
    memcpy(buf_rptr(b), src, len);
    return 0;
}
