/* loop.h - one epoll event loop per worker thread.
 *
 * The loop knows file descriptors, timers and deferred frees; nothing about
 * sessions. Callers embed `struct loop_io` / `struct loop_timer` in their own
 * objects and get them back in callbacks (container_of style via `owner`).
 *
 * Lifetime rule (the one that prevents cross talk on fd reuse): an object
 * that owns a loop_io must not be freed while the current epoll batch may
 * still hold an event pointing at it. Call loop_io_del() (which detaches the
 * io so stale events are ignored) and release the memory with
 * loop_defer_free(); the loop frees it after the batch.
 *
 * Return codes: 0 on success, -1 with errno set on failure.
 */
#ifndef FERRY_LOOP_H
#define FERRY_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct loop_io;
struct loop_timer;

/* Interest / readiness bits: the epoll ones (EPOLLIN, EPOLLOUT, EPOLLERR,
 * EPOLLHUP, EPOLLRDHUP) are passed through unchanged. */
#define LOOP_READ  EPOLLIN
#define LOOP_WRITE EPOLLOUT

typedef void loop_io_cb(struct loop *l, struct loop_io *io, uint32_t events);
typedef void loop_timer_cb(struct loop *l, struct loop_timer *t);
typedef void loop_free_fn(void *p);
typedef void loop_hook_fn(struct loop *l, void *arg);

struct loop_io {
    int fd;              /* -1 when not registered */
    uint32_t want;       /* interest currently registered with epoll */
    int in_epoll;        /* want == 0 keeps the fd out of the epoll set */
    loop_io_cb *cb;
    void *owner;
};

struct loop_timer {
    uint64_t when_ms;    /* absolute, on the loop's monotonic clock */
    size_t heap_idx;     /* 0 = not armed; otherwise index + 1 in the heap */
    loop_timer_cb *cb;
    void *owner;
};

/* Creation / teardown. loop_new() returns NULL with errno on failure. */
struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Runs until loop_stop() is called from inside a callback (or from another
 * thread through loop_wake()). Returns 0, or -1 if epoll_wait failed. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

/* One iteration of loop_run(): before-sleep hook, one epoll_wait (bounded
 * by the next timer and by timeout_ms: -1 = by the timer only, 0 = do not
 * sleep), the I/O batch, expired timers, deferred frees. For callers that
 * drive the loop themselves (tests, the session fuzzer). loop_stop() ends
 * nothing here; it only keeps the wait from sleeping until loop_run() is
 * entered again. Returns the number of I/O events dispatched (0 if none,
 * or on EINTR), or -1 if epoll_wait failed. */
int loop_run_once(struct loop *l, int timeout_ms);

/* Thread-safe: interrupts epoll_wait from any thread and runs the wake hook
 * (set with loop_set_wake_hook) on the loop's own thread. */
void loop_wake(struct loop *l);
void loop_set_wake_hook(struct loop *l, loop_hook_fn *fn, void *arg);

/* Called once per iteration, before the loop sleeps (batched work such as
 * c-ares timeouts). At most one hook per loop. */
void loop_set_before_sleep(struct loop *l, loop_hook_fn *fn, void *arg);

/* File descriptors. The fd must be non-blocking. loop_io_want() only calls
 * epoll_ctl when the interest actually changes. `want` == 0 takes the fd out
 * of the epoll set (it stays attached to the io): epoll reports HUP and ERR
 * even with no interest, which would spin a level-triggered loop on a socket
 * we are deliberately not reading. loop_io_del() detaches the io; it is safe
 * to call twice and does not close the fd. */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t want,
                loop_io_cb *cb, void *owner);
int loop_io_want(struct loop *l, struct loop_io *io, uint32_t want);
void loop_io_del(struct loop *l, struct loop_io *io);
/* Detaches the io and closes its fd, without EPOLL_CTL_DEL: closing the last
 * descriptor of an open file removes it from every epoll set, so the DEL is
 * a wasted syscall. Only for fds never dup()ed or inherited by a child. */
void loop_io_close(struct loop *l, struct loop_io *io);

/* Timers: a binary min-heap; arming an armed timer moves it. Callbacks run
 * after the I/O batch of the iteration in which they expire. */
void loop_timer_init(struct loop_timer *t, loop_timer_cb *cb, void *owner);
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t when_ms);
void loop_timer_arm_in(struct loop *l, struct loop_timer *t, uint64_t delay_ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline int loop_timer_armed(const struct loop_timer *t) { return t->heap_idx != 0; }

/* Frees `p` with `fn` once no event of the current batch can reference it. */
void loop_defer_free(struct loop *l, void *p, loop_free_fn *fn);

/* Monotonic milliseconds, cached once per iteration (cheap to call often). */
uint64_t loop_now(const struct loop *l);
/* Re-reads the clock (after long work inside one iteration). */
uint64_t loop_update_now(struct loop *l);
/* Reads CLOCK_MONOTONIC directly, in milliseconds. */
uint64_t clock_now_ms(void);
/* Reads CLOCK_MONOTONIC directly, in microseconds (stages, toxics). */
uint64_t clock_now_us(void);

#endif
