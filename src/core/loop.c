/* loop.c - epoll event loop with a timer heap and deferred frees.
 *
 * One iteration: wait (bounded by the nearest timer) -> dispatch the I/O
 * batch -> run expired timers -> free what was deferred -> before-sleep hook.
 * Level-triggered epoll: a callback that stops early (work cap) is simply
 * called again next iteration, which keeps fairness between fds.
 */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

struct deferred {
    void *p;
    loop_free_fn *fn;
};

struct loop {
    int epfd;
    int wakefd;                     /* eventfd for loop_wake() */
    int stopping;
    uint64_t now_ms;

    struct loop_timer **heap;       /* min-heap on when_ms */
    size_t heap_len, heap_cap;

    struct deferred *defer;         /* freed after the current batch */
    size_t defer_len, defer_cap;

    loop_hook_fn *before_sleep;
    void *before_sleep_arg;
    loop_hook_fn *wake_hook;
    void *wake_arg;
    struct loop_io wake_io;
};

uint64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t loop_now(const struct loop *l) { return l->now_ms; }
uint64_t loop_update_now(struct loop *l) { return l->now_ms = clock_now_ms(); }

static void wake_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    uint64_t v;
    (void)events;
    /* A failed read only means another wake already drained the counter. */
    if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN) return;
    if (l->wake_hook) l->wake_hook(l, l->wake_arg);
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->wake_io.fd = -1;
    if (l->epfd < 0 || l->wakefd < 0 ||
        loop_io_add(l, &l->wake_io, l->wakefd, LOOP_READ, wake_cb, l) < 0) {
        int e = errno;
        loop_free(l);
        errno = e;
        return NULL;
    }
    l->now_ms = clock_now_ms();
    return l;
}

static void run_deferred(struct loop *l)
{
    /* A free function may defer more frees: walk by index, not a snapshot. */
    for (size_t i = 0; i < l->defer_len; i++)
        l->defer[i].fn(l->defer[i].p);
    l->defer_len = 0;
}

void loop_free(struct loop *l)
{
    if (!l) return;
    run_deferred(l);
    if (l->epfd >= 0) close(l->epfd);
    if (l->wakefd >= 0) close(l->wakefd);
    free(l->heap);
    free(l->defer);
    free(l);
}

void loop_stop(struct loop *l) { l->stopping = 1; }

void loop_wake(struct loop *l)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: a wake is already pending. */
    ssize_t n = write(l->wakefd, &one, sizeof(one));
    (void)n;
}

void loop_set_wake_hook(struct loop *l, loop_hook_fn *fn, void *arg)
{
    l->wake_hook = fn;
    l->wake_arg = arg;
}

void loop_set_before_sleep(struct loop *l, loop_hook_fn *fn, void *arg)
{
    l->before_sleep = fn;
    l->before_sleep_arg = arg;
}

/* ---- file descriptors ---- */

static int io_ctl(struct loop *l, struct loop_io *io, uint32_t want)
{
    struct epoll_event ev = { .events = want, .data.ptr = io };
    int op = !io->in_epoll ? EPOLL_CTL_ADD : want ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    if (!io->in_epoll && !want) return 0;
    if (epoll_ctl(l->epfd, op, io->fd, &ev) < 0) return -1;
    io->in_epoll = want != 0;
    io->want = want;
    return 0;
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t want,
                loop_io_cb *cb, void *owner)
{
    io->fd = fd;
    io->want = 0;
    io->in_epoll = 0;
    io->cb = cb;
    io->owner = owner;
    if (io_ctl(l, io, want) < 0) {
        io->fd = -1;
        return -1;
    }
    return 0;
}

int loop_io_want(struct loop *l, struct loop_io *io, uint32_t want)
{
    if (io->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (io->want == want) return 0;
    return io_ctl(l, io, want);
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
    if (io->fd < 0) return;
    /* Must happen before the fd is closed: a closed fd that is dup'ed
     * elsewhere would otherwise stay in the epoll set. */
    if (io->in_epoll) epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fd = -1;
    io->want = 0;
    io->in_epoll = 0;
}

void loop_io_close(struct loop *l, struct loop_io *io)
{
    (void)l;
    if (io->fd < 0) return;
    close(io->fd);
    io->fd = -1;
    io->want = 0;
    io->in_epoll = 0;
}

/* ---- timers: binary min-heap, heap_idx is 1-based so 0 means unarmed ---- */

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_idx = i + 1;
}

static void heap_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->when_ms <= t->when_ms) break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len) break;
        if (c + 1 < l->heap_len && l->heap[c + 1]->when_ms < l->heap[c]->when_ms) c++;
        if (t->when_ms <= l->heap[c]->when_ms) break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb *cb, void *owner)
{
    t->when_ms = 0;
    t->heap_idx = 0;
    t->cb = cb;
    t->owner = owner;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    if (!t->heap_idx) return;
    size_t i = t->heap_idx - 1;
    struct loop_timer *last = l->heap[--l->heap_len];
    t->heap_idx = 0;
    if (i == l->heap_len) return;
    heap_set(l, i, last);
    heap_up(l, i);
    heap_down(l, last->heap_idx - 1);
}

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t when_ms)
{
    if (t->heap_idx) loop_timer_cancel(l, t);
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
        /* sizeof(*h): an array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
        struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
        /* A timer that silently never fires would hang a session forever,
         * and firing it from here would re-enter the caller: neither is
         * acceptable, and a heap of pointers failing to grow means the
         * process is out of memory anyway. */
        if (!h) abort();
        l->heap = h;
        l->heap_cap = cap;
    }
    t->when_ms = when_ms;
    heap_set(l, l->heap_len++, t);
    heap_up(l, l->heap_len - 1);
}

void loop_timer_arm_in(struct loop *l, struct loop_timer *t, uint64_t delay_ms)
{
    loop_timer_arm(l, t, l->now_ms + delay_ms);
}

static void run_timers(struct loop *l)
{
    /* Bounded: timers armed during this pass for "now" wait a turn, so a
     * callback that re-arms itself at now cannot starve I/O. */
    size_t budget = l->heap_len;
    while (l->heap_len && budget--) {
        struct loop_timer *t = l->heap[0];
        if (t->when_ms > l->now_ms) break;
        loop_timer_cancel(l, t);
        t->cb(l, t);
    }
}

static int next_timeout(const struct loop *l)
{
    if (l->stopping) return 0;
    if (!l->heap_len) return -1;
    uint64_t when = l->heap[0]->when_ms;
    if (when <= l->now_ms) return 0;
    uint64_t d = when - l->now_ms;
    return d > 60000 ? 60000 : (int)d;
}

/* ---- deferred free ---- */

void loop_defer_free(struct loop *l, void *p, loop_free_fn *fn)
{
    if (l->defer_len == l->defer_cap) {
        size_t cap = l->defer_cap ? l->defer_cap * 2 : 64;
        struct deferred *d = realloc(l->defer, cap * sizeof(*d));
        if (!d) abort(); /* cannot free safely and cannot leak silently */
        l->defer = d;
        l->defer_cap = cap;
    }
    l->defer[l->defer_len++] = (struct deferred){ p, fn };
}

/* ---- the loop ---- */

int loop_run_once(struct loop *l, int timeout_ms)
{
    struct epoll_event events[LOOP_BATCH];
    if (l->before_sleep) {
        l->now_ms = clock_now_ms();   /* callbacks may have taken a while */
        l->before_sleep(l, l->before_sleep_arg);
    }
    int wait = next_timeout(l);
    if (timeout_ms >= 0 && (wait < 0 || wait > timeout_ms)) wait = timeout_ms;
    int n = epoll_wait(l->epfd, events, LOOP_BATCH, wait);
    if (n < 0 && errno != EINTR) return -1;
    if (n < 0) n = 0;
    l->now_ms = clock_now_ms();
    for (int i = 0; i < n; i++) {
        struct loop_io *io = events[i].data.ptr;
        /* fd < 0: deleted earlier in this batch; its memory is still
         * valid (deferred free) and the event is stale. */
        if (io->fd >= 0) io->cb(l, io, events[i].events);
    }
    run_deferred(l);
    run_timers(l);
    run_deferred(l);
    return n;
}

int loop_run(struct loop *l)
{
    l->stopping = 0;
    while (!l->stopping)
        if (loop_run_once(l, -1) < 0) return -1;
    return 0;
}
