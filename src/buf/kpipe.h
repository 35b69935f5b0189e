/* kpipe.h - kernel pipes for zero-copy splice(), pooled per thread.
 *
 * socket -> pipe -> socket with splice() moves pages without copying them
 * through user space. A pipe costs two fds, so a direction holds one only
 * while bytes sit in it, like a buffer; empty pipes go back to the pool.
 */
#ifndef FERRY_KPIPE_H
#define FERRY_KPIPE_H

#include <stddef.h>

struct kpipe {
    int rfd, wfd;
    size_t len;              /* bytes currently inside the pipe */
    size_t cap;              /* what the pipe holds (F_GETPIPE_SZ) */
    struct kpipe *next_free;
};

struct kpipe_pool {
    struct kpipe *free;
    size_t nfree, max_free;
    size_t in_use;
    size_t pipe_size;        /* F_SETPIPE_SZ request; 0 = kernel default */
};

void kpipe_pool_init(struct kpipe_pool *p, size_t max_free, size_t pipe_size);
void kpipe_pool_destroy(struct kpipe_pool *p);
/* NULL with errno (EMFILE...) when no pipe can be had: callers fall back to
 * copying through a buffer. */
struct kpipe *kpipe_get(struct kpipe_pool *p);
/* A pipe that still holds bytes is closed rather than pooled. */
void kpipe_put(struct kpipe_pool *p, struct kpipe *k);

#endif
