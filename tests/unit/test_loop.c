/* test_loop.c - unit tests for core/loop: timers, deferred frees, fd
 * interest, cross-thread wake and stop.
 *
 * Real pipes, socketpairs and threads; no network. Every loop_run() is
 * bounded by a watchdog timer that stops the loop and fails the test, and
 * main() sets an alarm as a last resort, so a broken loop cannot hang the
 * suite. Timers that must fire "at once" are armed at absolute times in the
 * past, which makes their order deterministic without sleeping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/loop.h"

#define WATCHDOG_MS 5000
#define NTIMERS 500

/* ---- helpers ---- */

static void watchdog_cb(struct loop *l, struct loop_timer *t)
{
    *(int *)t->owner = 1;
    loop_stop(l);
}

/* Runs the loop; fails the test if the watchdog had to stop it. */
static void run_bounded(struct loop *l)
{
    struct loop_timer wd;
    int fired = 0;

    loop_timer_init(&wd, watchdog_cb, &fired);
    loop_timer_arm_in(l, &wd, WATCHDOG_MS);
    assert_int_equal(loop_run(l), 0);
    loop_timer_cancel(l, &wd);
    if (fired)
        fail_msg("loop still running after %d ms", WATCHDOG_MS);
}

static struct loop *new_loop(void)
{
    struct loop *l = loop_new();

    assert_non_null(l);
    return l;
}

static void nonblocking_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void nonblocking_socketpair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* A time already in the past on the loop's clock, so the timer is due now.
 * `back` ms before now, clamped so it never wraps below zero. */
static uint64_t past(struct loop *l, uint64_t back)
{
    uint64_t now = loop_now(l);

    return back < now ? now - back : 0;
}

/* Small deterministic generator: the same "random" order on every run. */
static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* ---- timers ---- */

struct record {
    uint64_t when[NTIMERS + 8];
    int id[NTIMERS + 8];
    size_t n, stop_at;
};

struct rec_timer {
    struct loop_timer t;
    struct record *rec;
    int id;
};

static void record_cb(struct loop *l, struct loop_timer *t)
{
    struct rec_timer *rt = t->owner;
    struct record *r = rt->rec;

    assert_int_equal(loop_timer_armed(t), 0);   /* disarmed before its callback */
    assert_true(r->n < sizeof r->id / sizeof r->id[0]);
    r->when[r->n] = t->when_ms;
    r->id[r->n++] = rt->id;
    if (r->n == r->stop_at)
        loop_stop(l);
}

static void rec_init(struct rec_timer *rt, struct record *rec, int id)
{
    rt->rec = rec;
    rt->id = id;
    loop_timer_init(&rt->t, record_cb, rt);
}

static void assert_sorted(const struct record *r)
{
    for (size_t i = 1; i < r->n; i++)
        if (r->when[i - 1] > r->when[i])
            fail_msg("timer %zu (at %llu) ran before timer %zu (at %llu)", i - 1,
                     (unsigned long long)r->when[i - 1], i, (unsigned long long)r->when[i]);
}

/* Many timers armed in a scrambled order (with duplicate times) run in time
 * order, each exactly once. */
static void test_timer_heap_order(void **state)
{
    struct rec_timer t[NTIMERS];
    struct record rec;
    struct loop *l = new_loop();
    uint32_t seed = 42;
    int seen[NTIMERS] = { 0 };

    (void)state;
    memset(&rec, 0, sizeof rec);
    rec.stop_at = NTIMERS;
    for (int i = 0; i < NTIMERS; i++) {
        rec_init(&t[i], &rec, i);
        loop_timer_arm(l, &t[i].t, past(l, 1000 + lcg(&seed) % 3000));
        assert_true(loop_timer_armed(&t[i].t));
    }
    run_bounded(l);
    assert_int_equal(rec.n, NTIMERS);
    assert_sorted(&rec);
    for (size_t i = 0; i < rec.n; i++)
        seen[rec.id[i]]++;
    for (int i = 0; i < NTIMERS; i++)
        assert_int_equal(seen[i], 1);
    loop_free(l);
}

/* Cancelling from the middle of the heap (in scrambled order) keeps the
 * heap valid: the rest still run in order, the cancelled never. */
static void test_timer_cancel_middle(void **state)
{
    struct rec_timer t[NTIMERS];
    struct record rec;
    struct loop *l = new_loop();
    uint32_t seed = 7;
    int cancelled[NTIMERS] = { 0 }, ncancel = 0;

    (void)state;
    memset(&rec, 0, sizeof rec);
    for (int i = 0; i < NTIMERS; i++) {
        rec_init(&t[i], &rec, i);
        loop_timer_arm(l, &t[i].t, past(l, 1000 + lcg(&seed) % 5000));
    }
    while (ncancel < NTIMERS / 3) {
        int i = (int)(lcg(&seed) % NTIMERS);

        loop_timer_cancel(l, &t[i].t);      /* twice on the same one is fine */
        assert_false(loop_timer_armed(&t[i].t));
        if (!cancelled[i])
            ncancel++;
        cancelled[i] = 1;
    }
    rec.stop_at = (size_t)(NTIMERS - ncancel);
    run_bounded(l);
    assert_int_equal(rec.n, NTIMERS - ncancel);
    assert_sorted(&rec);
    for (size_t i = 0; i < rec.n; i++)
        assert_int_equal(cancelled[rec.id[i]], 0);
    loop_free(l);
}

/* Arming an armed timer moves it (never duplicates it). */
static void test_timer_rearm_moves(void **state)
{
    struct record rec;
    struct rec_timer a, b, c;
    struct loop *l = new_loop();
    uint64_t base = past(l, 10000);

    (void)state;
    memset(&rec, 0, sizeof rec);
    rec.stop_at = 3;
    rec_init(&a, &rec, 'a');
    rec_init(&b, &rec, 'b');
    rec_init(&c, &rec, 'c');
    loop_timer_arm(l, &a.t, base + 10);
    loop_timer_arm(l, &b.t, base + 20);
    loop_timer_arm(l, &c.t, base + 30);
    loop_timer_arm(l, &a.t, base + 40);      /* first -> last */
    loop_timer_arm(l, &c.t, base + 5);       /* last -> first */
    for (int i = 0; i < 100; i++)            /* many moves of one timer */
        loop_timer_arm(l, &b.t, base + 1000 + (uint64_t)i);
    loop_timer_arm(l, &b.t, base + 20);
    assert_int_equal(a.t.when_ms, base + 40);
    run_bounded(l);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.id[0], 'c');
    assert_int_equal(rec.id[1], 'b');
    assert_int_equal(rec.id[2], 'a');
    loop_free(l);
}

struct chain {
    struct loop_timer first, second;
    uint64_t first_now, second_clock;
    int second_runs;
};

static void chain_second_cb(struct loop *l, struct loop_timer *t)
{
    struct chain *c = t->owner;

    c->second_clock = clock_now_ms();
    c->second_runs++;
    loop_stop(l);
}

static void chain_first_cb(struct loop *l, struct loop_timer *t)
{
    struct chain *c = t->owner;

    c->first_now = loop_now(l);
    loop_timer_arm_in(l, &c->second, 30);
    assert_int_equal(c->second.when_ms, c->first_now + 30);
}

/* A timer callback arms another timer; it fires no earlier than asked. */
static void test_timer_cb_arms_timer(void **state)
{
    struct chain c;
    struct loop *l = new_loop();

    (void)state;
    memset(&c, 0, sizeof c);
    loop_timer_init(&c.first, chain_first_cb, &c);
    loop_timer_init(&c.second, chain_second_cb, &c);
    loop_timer_arm_in(l, &c.first, 0);
    run_bounded(l);
    assert_int_equal(c.second_runs, 1);
    assert_true(c.second_clock >= c.first_now + 30);
    assert_true(c.second_clock < c.first_now + 2000);
    loop_free(l);
}

struct canceller {
    struct loop_timer early, late, stop;
    int late_runs, stop_runs;
};

static void canceller_early_cb(struct loop *l, struct loop_timer *t)
{
    struct canceller *c = t->owner;

    loop_timer_cancel(l, &c->late);
}

static void canceller_late_cb(struct loop *l, struct loop_timer *t)
{
    ((struct canceller *)t->owner)->late_runs++;
}

static void canceller_stop_cb(struct loop *l, struct loop_timer *t)
{
    ((struct canceller *)t->owner)->stop_runs++;
    loop_stop(l);
}

/* Both due in the same pass: the first cancels the second, which must not
 * run even though it had already expired. */
static void test_timer_cancel_in_callback(void **state)
{
    struct canceller c;
    struct loop *l = new_loop();

    (void)state;
    memset(&c, 0, sizeof c);
    loop_timer_init(&c.early, canceller_early_cb, &c);
    loop_timer_init(&c.late, canceller_late_cb, &c);
    loop_timer_init(&c.stop, canceller_stop_cb, &c);
    loop_timer_arm(l, &c.early, past(l, 300));
    loop_timer_arm(l, &c.late, past(l, 200));
    loop_timer_arm(l, &c.stop, past(l, 100));
    run_bounded(l);
    assert_int_equal(c.late_runs, 0);
    assert_int_equal(c.stop_runs, 1);
    assert_false(loop_timer_armed(&c.late));
    loop_free(l);
}

struct spinner {
    struct loop_timer t;
    struct loop_io io;
    int wfd;
    int timer_runs, timer_runs_at_io;
};

static void spinner_timer_cb(struct loop *l, struct loop_timer *t)
{
    struct spinner *s = t->owner;

    if (s->timer_runs++ == 0)
        assert_int_equal(write(s->wfd, "x", 1), 1);
    loop_timer_arm(l, t, loop_now(l));          /* due again at once */
}

static void spinner_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct spinner *s = io->owner;

    s->timer_runs_at_io = s->timer_runs;
    loop_stop(l);
}

/* A timer that keeps re-arming itself for "now" must not starve I/O: the
 * pipe it makes readable is served on the next iteration. */
static void test_timer_self_rearm_does_not_starve_io(void **state)
{
    struct spinner s;
    struct loop *l = new_loop();
    int fds[2];

    (void)state;
    memset(&s, 0, sizeof s);
    nonblocking_pipe(fds);
    s.wfd = fds[1];
    assert_int_equal(loop_io_add(l, &s.io, fds[0], LOOP_READ, spinner_io_cb, &s), 0);
    loop_timer_init(&s.t, spinner_timer_cb, &s);
    loop_timer_arm(l, &s.t, past(l, 1));
    run_bounded(l);
    /* One pass runs at most as many timers as were armed when it began
     * (this one and the watchdog). */
    assert_in_range(s.timer_runs_at_io, 1, 2);
    loop_io_del(l, &s.io);
    close(fds[0]);
    close(fds[1]);
    loop_free(l);
}

/* ---- deferred free ---- */

static struct {
    int calls;
    void *ptrs[8];
} freed;

static void record_free(void *p)
{
    assert_true(freed.calls < 8);
    freed.ptrs[freed.calls++] = p;
    free(p);
}

struct conn {
    struct loop_io io;
    int fds[2];
    struct conn *other;
    int *ncallbacks;
};

static struct conn *conn_new(struct loop *l, loop_io_cb *cb, int *ncallbacks)
{
    struct conn *c = calloc(1, sizeof *c);

    assert_non_null(c);
    nonblocking_pipe(c->fds);
    assert_int_equal(write(c->fds[1], "x", 1), 1);   /* readable at once */
    c->ncallbacks = ncallbacks;
    assert_int_equal(loop_io_add(l, &c->io, c->fds[0], LOOP_READ, cb, c), 0);
    return c;
}

/* Detach, close and hand the memory to the loop. */
static void conn_close(struct loop *l, struct conn *c)
{
    loop_io_del(l, &c->io);
    close(c->fds[0]);
    close(c->fds[1]);
    loop_defer_free(l, c, record_free);
}

static void close_self_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct conn *c = io->owner;

    (*c->ncallbacks)++;
    assert_int_equal(freed.calls, 0);     /* not even the other's, same batch */
    conn_close(l, c);
    assert_int_equal(freed.calls, 0);     /* not inside the callback */
}

struct check_freed {
    struct loop_timer t;
    int saw, ncallbacks_at_timer;
    int *ncallbacks;
};

static void check_freed_cb(struct loop *l, struct loop_timer *t)
{
    struct check_freed *cf = t->owner;

    cf->saw = freed.calls;
    cf->ncallbacks_at_timer = *cf->ncallbacks;
    loop_stop(l);
}

/* Two fds ready in one batch: each callback defers its own free; neither is
 * freed until the batch is over, both are by the time timers run. */
static void test_defer_free_after_batch(void **state)
{
    struct loop *l = new_loop();
    struct check_freed cf;
    struct conn *a, *b;
    int ncallbacks = 0;

    (void)state;
    memset(&freed, 0, sizeof freed);
    a = conn_new(l, close_self_cb, &ncallbacks);
    b = conn_new(l, close_self_cb, &ncallbacks);
    memset(&cf, 0, sizeof cf);
    cf.ncallbacks = &ncallbacks;
    loop_timer_init(&cf.t, check_freed_cb, &cf);
    loop_timer_arm(l, &cf.t, past(l, 1));
    run_bounded(l);
    assert_int_equal(ncallbacks, 2);
    assert_int_equal(cf.ncallbacks_at_timer, 2);   /* same batch as the timer pass */
    assert_int_equal(cf.saw, 2);
    assert_int_equal(freed.calls, 2);
    assert_true((freed.ptrs[0] == a && freed.ptrs[1] == b) ||
                (freed.ptrs[0] == b && freed.ptrs[1] == a));
    loop_free(l);
}

static void close_other_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct conn *c = io->owner;

    (*c->ncallbacks)++;
    conn_close(l, c->other);
    conn_close(l, c);
}

/* The first callback of a batch closes its peer, whose event is already in
 * the same batch: that stale event must be dropped, and the peer's memory
 * must still be valid while the loop looks at it (ASan would say). */
static void test_stale_event_after_del(void **state)
{
    struct loop *l = new_loop();
    struct check_freed cf;
    struct conn *a, *b;
    int ncallbacks = 0;

    (void)state;
    memset(&freed, 0, sizeof freed);
    a = conn_new(l, close_other_cb, &ncallbacks);
    b = conn_new(l, close_other_cb, &ncallbacks);
    a->other = b;
    b->other = a;
    memset(&cf, 0, sizeof cf);
    cf.ncallbacks = &ncallbacks;
    loop_timer_init(&cf.t, check_freed_cb, &cf);
    loop_timer_arm(l, &cf.t, past(l, 1));
    run_bounded(l);
    assert_int_equal(ncallbacks, 1);
    assert_int_equal(cf.saw, 2);
    loop_free(l);
}

struct nested {
    struct loop *l;
    void *second;
};

static void nested_free(void *p)
{
    struct nested *n = p;

    /* Frees requested while deferred frees run are honoured in the same pass. */
    loop_defer_free(n->l, n->second, record_free);
    record_free(n);
}

static void defer_nested_cb(struct loop *l, struct loop_timer *t)
{
    struct nested *n = malloc(sizeof *n);

    assert_non_null(n);
    n->l = l;
    n->second = malloc(16);
    assert_non_null(n->second);
    loop_defer_free(l, n, nested_free);
    *(int *)t->owner = 1;
}

static void test_defer_free_nested(void **state)
{
    struct loop *l = new_loop();
    struct loop_timer t, stop;
    struct check_freed cf;
    int armed = 0, dummy = 0;

    (void)state;
    memset(&freed, 0, sizeof freed);
    loop_timer_init(&t, defer_nested_cb, &armed);
    loop_timer_arm(l, &t, past(l, 1));
    memset(&cf, 0, sizeof cf);
    cf.ncallbacks = &dummy;
    loop_timer_init(&stop, check_freed_cb, &cf);
    loop_timer_arm_in(l, &stop, 20);        /* a later iteration */
    run_bounded(l);
    assert_int_equal(armed, 1);
    assert_int_equal(cf.saw, 2);
    loop_free(l);
}

/* Frees still pending when the loop is destroyed are carried out. */
static void test_defer_free_at_loop_free(void **state)
{
    struct loop *l = new_loop();

    (void)state;
    memset(&freed, 0, sizeof freed);
    for (int i = 0; i < 3; i++)
        loop_defer_free(l, malloc(8), record_free);
    assert_int_equal(freed.calls, 0);
    loop_free(l);
    assert_int_equal(freed.calls, 3);
}

/* ---- fd interest ---- */

struct quiet {
    struct loop_io io;
    struct loop_timer t;
    int calls, phase, calls_at[3];
    uint32_t last_events;
};

static void quiet_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct quiet *q = io->owner;

    q->calls++;
    q->last_events = events;
    /* Never read: the fd stays ready; only want == 0 can silence it. */
    assert_int_equal(loop_io_want(l, io, 0), 0);
    assert_int_equal(io->in_epoll, 0);
    assert_int_equal(io->want, 0);
}

static void quiet_timer_cb(struct loop *l, struct loop_timer *t)
{
    struct quiet *q = t->owner;

    q->calls_at[q->phase++] = q->calls;
    if (q->phase == 1) {
        /* Back into the epoll set: the pending data is reported again. */
        assert_int_equal(loop_io_want(l, &q->io, LOOP_READ), 0);
        assert_int_equal(q->io.in_epoll, 1);
        assert_int_equal(q->io.want, LOOP_READ);
        loop_timer_arm_in(l, t, 50);
    } else {
        loop_stop(l);
    }
}

/* want == 0 takes a ready fd out of epoll (a level-triggered loop would
 * otherwise call back on every iteration); want != 0 puts it back. With
 * the peer closed, HUP would be reported even with no interest, so the
 * test runs both with pending data and with a hung-up peer. */
static void check_want_zero(int close_peer)
{
    struct loop *l = new_loop();
    struct quiet q;
    int sv[2];

    memset(&q, 0, sizeof q);
    nonblocking_socketpair(sv);
    assert_int_equal(write(sv[1], "data", 4), 4);
    if (close_peer)
        close(sv[1]);
    assert_int_equal(loop_io_add(l, &q.io, sv[0], LOOP_READ, quiet_io_cb, &q), 0);
    loop_timer_init(&q.t, quiet_timer_cb, &q);
    loop_timer_arm_in(l, &q.t, 50);
    run_bounded(l);
    assert_int_equal(q.phase, 2);
    assert_int_equal(q.calls_at[0], 1);
    assert_int_equal(q.calls_at[1], 2);
    assert_true(q.last_events & EPOLLIN);
    if (close_peer)
        assert_true(q.last_events & (EPOLLHUP | EPOLLRDHUP));
    loop_io_del(l, &q.io);
    close(sv[0]);
    if (!close_peer)
        close(sv[1]);
    loop_free(l);
}

static void test_io_want_zero(void **state)
{
    (void)state;
    check_want_zero(0);
}

static void test_io_want_zero_hup(void **state)
{
    (void)state;
    check_want_zero(1);
}

static void count_and_stop_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    ++*(int *)io->owner;
    loop_stop(l);
}

/* An io added with no interest is attached but not in epoll; asking for
 * READ later registers it. */
static void test_io_add_without_interest(void **state)
{
    struct loop *l = new_loop();
    struct loop_io io;
    int sv[2], calls = 0;

    (void)state;
    nonblocking_socketpair(sv);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(loop_io_add(l, &io, sv[0], 0, count_and_stop_cb, &calls), 0);
    assert_int_equal(io.fd, sv[0]);
    assert_int_equal(io.in_epoll, 0);
    assert_int_equal(loop_io_want(l, &io, 0), 0);       /* no change: no-op */
    assert_int_equal(loop_io_want(l, &io, LOOP_READ | LOOP_WRITE), 0);
    assert_int_equal(loop_io_want(l, &io, LOOP_READ), 0);  /* MOD */
    run_bounded(l);
    assert_int_equal(calls, 1);
    loop_io_del(l, &io);
    close(sv[0]);
    close(sv[1]);
    loop_free(l);
}

static void test_io_errors(void **state)
{
    struct loop *l = new_loop();
    struct loop_io io;
    int sv[2], calls = 0;
    FILE *f = tmpfile();

    (void)state;
    assert_non_null(f);
    /* Regular files cannot be polled: the add fails and leaves io detached. */
    errno = 0;
    assert_int_equal(loop_io_add(l, &io, fileno(f), LOOP_READ, count_and_stop_cb, &calls), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(io.fd, -1);
    fclose(f);

    nonblocking_socketpair(sv);
    assert_int_equal(loop_io_add(l, &io, sv[0], LOOP_READ, count_and_stop_cb, &calls), 0);
    loop_io_del(l, &io);
    assert_int_equal(io.fd, -1);
    assert_int_equal(io.in_epoll, 0);
    loop_io_del(l, &io);                                /* twice: harmless */
    errno = 0;
    assert_int_equal(loop_io_want(l, &io, LOOP_READ), -1);
    assert_int_equal(errno, EBADF);
    /* The fd was not closed by loop_io_del. */
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(fcntl(sv[0], F_GETFD), FD_CLOEXEC);
    close(sv[0]);
    close(sv[1]);
    loop_free(l);
}

/* ---- wake, stop, clock ---- */

struct waker {
    struct loop *l;
    pthread_t loop_thread, hook_thread;
    int hook_runs, wakes;
};

static void wake_hook(struct loop *l, void *arg)
{
    struct waker *w = arg;

    w->hook_thread = pthread_self();
    w->hook_runs++;
    loop_stop(l);
}

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    struct timespec ts = { 0, 20 * 1000 * 1000 };

    nanosleep(&ts, NULL);           /* let the loop reach epoll_wait */
    for (int i = 0; i < w->wakes; i++)
        loop_wake(w->l);
    return NULL;
}

static void check_wake(int wakes)
{
    struct waker w;
    pthread_t th;

    memset(&w, 0, sizeof w);
    w.l = new_loop();
    w.loop_thread = pthread_self();
    w.wakes = wakes;
    loop_set_wake_hook(w.l, wake_hook, &w);
    assert_int_equal(pthread_create(&th, NULL, waker_main, &w), 0);
    run_bounded(w.l);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* Wakes before the hook ran coalesce into one eventfd read. */
    assert_in_range(w.hook_runs, 1, wakes);
    assert_true(pthread_equal(w.hook_thread, w.loop_thread));
    loop_free(w.l);
}

static void test_wake_from_thread(void **state)
{
    (void)state;
    check_wake(1);
}

static void test_wake_many_from_thread(void **state)
{
    (void)state;
    check_wake(1000);
}

/* A wake sent before the loop runs is not lost. */
static void test_wake_before_run(void **state)
{
    struct waker w;

    (void)state;
    memset(&w, 0, sizeof w);
    w.l = new_loop();
    w.loop_thread = pthread_self();
    loop_set_wake_hook(w.l, wake_hook, &w);
    loop_wake(w.l);
    loop_wake(w.l);
    run_bounded(w.l);
    assert_int_equal(w.hook_runs, 1);
    loop_free(w.l);
}

static void stop_every_third(struct loop *l, void *arg)
{
    if (++*(int *)arg % 3 == 0)
        loop_stop(l);
}

static void ignore_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
}

/* loop_stop from the before-sleep hook ends loop_run after that iteration,
 * without sleeping; loop_run can be entered again afterwards. A pipe that
 * stays readable keeps every iteration from blocking in epoll_wait. */
static void test_stop_and_run_again(void **state)
{
    struct loop *l = new_loop();
    struct loop_io busy;
    int iterations = 0, fds[2];
    uint64_t t0 = clock_now_ms();

    (void)state;
    nonblocking_pipe(fds);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(loop_io_add(l, &busy, fds[0], LOOP_READ, ignore_cb, NULL), 0);
    loop_set_before_sleep(l, stop_every_third, &iterations);
    run_bounded(l);
    assert_int_equal(iterations, 3);
    run_bounded(l);
    assert_int_equal(iterations, 6);
    assert_true(clock_now_ms() - t0 < 1000);    /* never slept on the watchdog */
    loop_io_del(l, &busy);
    close(fds[0]);
    close(fds[1]);
    loop_free(l);
}

/* Stopping from an I/O callback with nothing else pending: loop_run
 * returns without waiting for the next timer. */
static void test_stop_from_io(void **state)
{
    struct loop *l = new_loop();
    struct loop_io io;
    int calls = 0, fds[2];
    uint64_t t0 = clock_now_ms();

    (void)state;
    nonblocking_pipe(fds);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(loop_io_add(l, &io, fds[0], LOOP_READ, count_and_stop_cb, &calls), 0);
    run_bounded(l);
    assert_int_equal(calls, 1);
    assert_true(clock_now_ms() - t0 < 1000);
    loop_io_del(l, &io);
    close(fds[0]);
    close(fds[1]);
    loop_free(l);
}

/* ---- loop_run_once: one bounded iteration, for callers that drive ---- */

struct once {
    struct loop_timer t;
    struct loop_io io;
    int timer_runs, io_runs;
};

static void once_timer_cb(struct loop *l, struct loop_timer *t)
{
    ((struct once *)t->owner)->timer_runs++;
}

static void stop_timer_cb(struct loop *l, struct loop_timer *t)
{
    ((struct once *)t->owner)->timer_runs++;
    loop_stop(l);
}

static void once_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct once *o = io->owner;
    char c;

    o->io_runs++;
    assert_int_equal(read(io->fd, &c, 1), 1);
}

/* Nothing ready: timeout 0 returns at once, a timeout bounds the wait even
 * with a later timer armed, and the timer does not fire early. */
static void test_run_once_bounded(void **state)
{
    struct loop *l = new_loop();
    struct once o;
    uint64_t t0;

    (void)state;
    memset(&o, 0, sizeof o);
    loop_timer_init(&o.t, once_timer_cb, &o);
    loop_timer_arm_in(l, &o.t, 5000);
    t0 = clock_now_ms();
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_true(clock_now_ms() - t0 < 1000);
    assert_int_equal(loop_run_once(l, 20), 0);
    assert_true(clock_now_ms() - t0 >= 20);
    assert_true(clock_now_ms() - t0 < 2000);
    assert_int_equal(o.timer_runs, 0);
    assert_true(loop_timer_armed(&o.t));
    loop_timer_cancel(l, &o.t);
    loop_free(l);
}

/* A timer due before the timeout ends the wait and runs in that call; a
 * timeout of -1 waits for it. */
static void test_run_once_timer(void **state)
{
    struct loop *l = new_loop();
    struct once o;
    uint64_t t0;

    (void)state;
    memset(&o, 0, sizeof o);
    loop_timer_init(&o.t, once_timer_cb, &o);
    t0 = loop_update_now(l);
    loop_timer_arm_in(l, &o.t, 30);
    while (o.timer_runs == 0 && clock_now_ms() - t0 < WATCHDOG_MS)
        assert_int_equal(loop_run_once(l, 5000), 0);
    assert_int_equal(o.timer_runs, 1);
    assert_true(clock_now_ms() - t0 >= 30);
    assert_true(clock_now_ms() - t0 < 2000);
    loop_timer_arm(l, &o.t, past(l, 1));
    assert_int_equal(loop_run_once(l, -1), 0);      /* due: no sleep at all */
    assert_int_equal(o.timer_runs, 2);
    loop_free(l);
}

/* Ready fds: one call dispatches the batch once and counts it; deferred
 * frees are done before it returns; loop_stop() does not make it sleep
 * or fail, and loop_run() still stops and can be run again afterwards. */
static void test_run_once_io_and_defer(void **state)
{
    struct loop *l = new_loop();
    struct once o;
    int fds[2];

    (void)state;
    memset(&o, 0, sizeof o);
    memset(&freed, 0, sizeof freed);
    nonblocking_pipe(fds);
    assert_int_equal(loop_io_add(l, &o.io, fds[0], LOOP_READ, once_io_cb, &o), 0);
    assert_int_equal(write(fds[1], "ab", 2), 2);
    loop_defer_free(l, malloc(8), record_free);
    assert_int_equal(loop_run_once(l, 1000), 1);
    assert_int_equal(o.io_runs, 1);
    assert_int_equal(freed.calls, 1);
    assert_int_equal(loop_run_once(l, 1000), 1);    /* level-triggered: the second byte */
    assert_int_equal(o.io_runs, 2);
    loop_stop(l);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(o.io_runs, 2);
    assert_int_equal(write(fds[1], "c", 1), 1);
    loop_timer_init(&o.t, stop_timer_cb, &o);
    loop_timer_arm(l, &o.t, past(l, 1));
    run_bounded(l);                                 /* the stop left behind is cleared */
    assert_int_equal(o.io_runs, 3);
    assert_int_equal(o.timer_runs, 1);
    loop_io_del(l, &o.io);
    close(fds[0]);
    close(fds[1]);
    loop_free(l);
}

static void test_clock(void **state)
{
    struct loop *l = new_loop();
    struct loop_timer t;
    uint64_t a, b;

    (void)state;
    a = loop_now(l);
    assert_int_equal(loop_now(l), a);              /* cached */
    b = loop_update_now(l);
    assert_true(b >= a);
    assert_int_equal(loop_now(l), b);
    assert_true(clock_now_ms() >= b);
    loop_timer_init(&t, NULL, NULL);
    assert_false(loop_timer_armed(&t));
    loop_timer_arm_in(l, &t, 1234);
    assert_int_equal(t.when_ms, b + 1234);
    assert_true(loop_timer_armed(&t));
    loop_timer_cancel(l, &t);
    assert_false(loop_timer_armed(&t));
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_heap_order),
        cmocka_unit_test(test_timer_cancel_middle),
        cmocka_unit_test(test_timer_rearm_moves),
        cmocka_unit_test(test_timer_cb_arms_timer),
        cmocka_unit_test(test_timer_cancel_in_callback),
        cmocka_unit_test(test_timer_self_rearm_does_not_starve_io),
        cmocka_unit_test(test_defer_free_after_batch),
        cmocka_unit_test(test_stale_event_after_del),
        cmocka_unit_test(test_defer_free_nested),
        cmocka_unit_test(test_defer_free_at_loop_free),
        cmocka_unit_test(test_io_want_zero),
        cmocka_unit_test(test_io_want_zero_hup),
        cmocka_unit_test(test_io_add_without_interest),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_wake_from_thread),
        cmocka_unit_test(test_wake_many_from_thread),
        cmocka_unit_test(test_wake_before_run),
        cmocka_unit_test(test_stop_and_run_again),
        cmocka_unit_test(test_stop_from_io),
        cmocka_unit_test(test_run_once_bounded),
        cmocka_unit_test(test_run_once_timer),
        cmocka_unit_test(test_run_once_io_and_defer),
        cmocka_unit_test(test_clock),
    };

    /* Last resort if the loop itself hangs: SIGALRM ends the process. */
    alarm(120);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
