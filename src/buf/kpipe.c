/* kpipe.c - see kpipe.h. */
#include "buf/kpipe.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

void kpipe_pool_init(struct kpipe_pool *p, size_t max_free, size_t pipe_size)
{
    p->free = NULL;
    p->nfree = 0;
    p->in_use = 0;
    p->max_free = max_free;
    p->pipe_size = pipe_size;
}

static void kpipe_close(struct kpipe *k)
{
    close(k->rfd);
    close(k->wfd);
    free(k);
}

void kpipe_pool_destroy(struct kpipe_pool *p)
{
    while (p->free) {
        struct kpipe *k = p->free;
        p->free = k->next_free;
        kpipe_close(k);
    }
    p->nfree = 0;
}

struct kpipe *kpipe_get(struct kpipe_pool *p)
{
    struct kpipe *k = p->free;
    if (k) {
        p->free = k->next_free;
        p->nfree--;
        p->in_use++;
        return k;
    }
    int fds[2];
    k = malloc(sizeof(*k));
    if (!k) return NULL;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        free(k);
        return NULL;
    }
    /* Best effort: the kernel may refuse the size (pipe-max-size, the
     * user's pipe quota); then the pipe keeps what it has. */
    int cap = p->pipe_size ? fcntl(fds[1], F_SETPIPE_SZ, (int)p->pipe_size) : -1;
    if (cap <= 0) cap = fcntl(fds[1], F_GETPIPE_SZ);
    k->cap = cap > 0 ? (size_t)cap : 65536;
    k->rfd = fds[0];
    k->wfd = fds[1];
    k->len = 0;
    k->next_free = NULL;
    p->in_use++;
    return k;
}

void kpipe_put(struct kpipe_pool *p, struct kpipe *k)
{
    if (!k) return;
    p->in_use--;
    if (k->len != 0 || p->nfree >= p->max_free) {
        kpipe_close(k);
        return;
    }
    k->next_free = p->free;
    p->free = k;
    p->nfree++;
}
