/* test_health.c - active health checks on the real loop, against real
 * loopback servers in the same process (same loop).
 *
 * The test observes what the workers would: the shared array. A 1 ms poll
 * timer records, for every server, the published `up` at each value of
 * `gen` (and fails if a gen was skipped, so counts are exact). DNS goes to a
 * UDP socket on 127.0.0.1 that never answers ("blackhole"), so nothing
 * leaves the machine; localhost is answered from /etc/hosts.
 * Every loop run is bounded by a guard timer; alarm() is the last resort.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "net/addr.h"
#include "net/sock.h"
#include "obs/log.h"
#include "resolver/resolver.h"
#include "upstream/balancer.h"
#include "upstream/health.h"

#define MAX_SRV 4
#define MAX_GEN 64
#define MAX_CONNS 16
#define GUARD_MS 3000u

/* ---- a tiny TCP server on the test loop ---- */

enum tsrv_mode {
    TS_CLOSE,       /* accept and close */
    TS_ANSWER,      /* write answer on accept, answer2 once a request arrived,
                     * then shut down the write side */
    TS_SILENT,      /* accept, read, never answer */
};

struct tconn {
    struct tsrv *srv;
    struct loop_io io;
    int answered;
};

struct tsrv {
    struct loop *loop;
    int lfd;
    struct loop_io lio;
    uint16_t port;
    enum tsrv_mode mode;
    const char *answer, *answer2;
    unsigned accepted;
    char rx[512];
    size_t rx_len;
    struct tconn conns[MAX_CONNS];
};

static void tconn_close(struct tconn *c)
{
    if (c->io.fd < 0) return;
    int fd = c->io.fd;
    loop_io_del(c->srv->loop, &c->io);
    close(fd);
}

static void tconn_write(struct tconn *c, const char *s)
{
    if (s && *s) assert_int_equal(send(c->io.fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void tconn_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct tconn *c = io->owner;
    struct tsrv *srv = c->srv;
    char buf[256];
    (void)l;
    (void)events;
    ssize_t r = recv(io->fd, buf, sizeof(buf), 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        tconn_close(c);
        return;
    }
    size_t room = sizeof(srv->rx) - srv->rx_len;
    size_t k = (size_t)r < room ? (size_t)r : room;
    memcpy(srv->rx + srv->rx_len, buf, k);
    srv->rx_len += k;
    if (srv->mode == TS_ANSWER && !c->answered) {
        c->answered = 1;
        tconn_write(c, srv->answer2);
        shutdown(io->fd, SHUT_WR);
    }
}

static void tsrv_accept_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct tsrv *srv = io->owner;
    (void)events;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        srv->accepted++;
        struct tconn *c = NULL;
        for (size_t i = 0; i < MAX_CONNS && !c; i++)
            if (srv->conns[i].io.fd < 0) c = &srv->conns[i];
        if (srv->mode == TS_CLOSE || !c) {
            close(fd);
            continue;
        }
        c->answered = 0;
        assert_int_equal(loop_io_add(l, &c->io, fd, LOOP_READ, tconn_cb, c), 0);
        if (srv->mode == TS_ANSWER) {
            tconn_write(c, srv->answer);
            if (!srv->answer2) {
                c->answered = 1;
                shutdown(fd, SHUT_WR);
            }
        }
    }
}

static void tsrv_listen(struct tsrv *srv)
{
    struct net_addr a;
    char err[128] = "";
    assert_int_equal(net_addr_from_literal("127.0.0.1", srv->port, &a), 0);
    srv->lfd = sock_listen(&a, 0, 64, err, sizeof(err));
    if (srv->lfd < 0) fail_msg("listen: %s", err);
    if (!srv->port) {
        struct net_addr got;
        assert_int_equal(sock_local_addr(srv->lfd, &got), 0);
        srv->port = net_addr_port(&got);
    }
    assert_int_equal(loop_io_add(srv->loop, &srv->lio, srv->lfd, LOOP_READ, tsrv_accept_cb, srv), 0);
}

static void tsrv_unlisten(struct tsrv *srv)
{
    if (srv->lfd < 0) return;
    loop_io_del(srv->loop, &srv->lio);
    close(srv->lfd);
    srv->lfd = -1;
}

static void tsrv_start(struct tsrv *srv, struct loop *l, enum tsrv_mode mode)
{
    memset(srv, 0, sizeof(*srv));
    srv->loop = l;
    srv->mode = mode;
    srv->lfd = -1;
    for (size_t i = 0; i < MAX_CONNS; i++) {
        srv->conns[i].srv = srv;
        srv->conns[i].io.fd = -1;
    }
    tsrv_listen(srv);
}

static void tsrv_stop(struct tsrv *srv)
{
    tsrv_unlisten(srv);
    for (size_t i = 0; i < MAX_CONNS; i++) tconn_close(&srv->conns[i]);
}

static size_t tsrv_open_conns(const struct tsrv *srv)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_CONNS; i++) n += srv->conns[i].io.fd >= 0;
    return n;
}

/* A loopback port with nothing listening: connects are refused. */
static uint16_t closed_port(void)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* ---- fixture ---- */

struct fixture;
typedef int stop_pred(struct fixture *fx);

struct fixture {
    struct loop *loop;
    struct resolver *r;
    int dns_fd;                        /* blackhole DNS server (UDP) */
    struct tsrv srv, srv2;
    struct health_checker *hc;
    struct health_shared shared[MAX_SRV];
    size_t nsrv;
    uint64_t t0;                       /* health_start time */
    /* observations, per server, indexed by gen */
    int hist[MAX_SRV][MAX_GEN];
    uint64_t at[MAX_SRV][MAX_GEN];
    unsigned seen[MAX_SRV];
    int skipped;
    struct loop_timer guard, poll;
    int guard_fired;
    stop_pred *pred;
    unsigned want_idx, want_gen;
    int stop_in_poll;                  /* health_stop from the poll callback */
    unsigned long pred_arg;
};

static void record(struct fixture *fx)
{
    uint64_t now = clock_now_ms();
    for (size_t i = 0; i < fx->nsrv; i++) {
        unsigned g = health_gen(&fx->shared[i]);
        if (g == fx->seen[i]) continue;
        if (g != fx->seen[i] + 1) fx->skipped = 1;
        if (g < MAX_GEN) {
            fx->hist[i][g] = health_is_up(&fx->shared[i]);
            fx->at[i][g] = now;
        }
        fx->seen[i] = g;
    }
}

static void guard_cb(struct loop *l, struct loop_timer *t)
{
    struct fixture *fx = t->owner;
    fx->guard_fired = 1;
    loop_stop(l);
}

static void poll_cb(struct loop *l, struct loop_timer *t)
{
    struct fixture *fx = t->owner;
    record(fx);
    if (fx->pred && fx->pred(fx)) {
        if (fx->stop_in_poll) {
            health_stop(fx->hc);
            fx->hc = NULL;
        }
        loop_stop(l);
        return;
    }
    loop_timer_arm_in(l, t, 1);
}

/* Runs the loop until pred holds (checked every ms), at most max_ms. */
static void run_until(struct fixture *fx, stop_pred *pred, unsigned max_ms)
{
    fx->pred = pred;
    fx->guard_fired = 0;
    loop_timer_arm(fx->loop, &fx->guard, clock_now_ms() + max_ms);
    loop_timer_arm_in(fx->loop, &fx->poll, 0);
    assert_int_equal(loop_run(fx->loop), 0);
    loop_timer_cancel(fx->loop, &fx->guard);
    loop_timer_cancel(fx->loop, &fx->poll);
    fx->pred = NULL;
    assert_false(fx->skipped);
}

static int pred_gen(struct fixture *fx) { return fx->seen[fx->want_idx] >= fx->want_gen; }

static void run_until_gen(struct fixture *fx, unsigned idx, unsigned gen)
{
    fx->want_idx = idx;
    fx->want_gen = gen;
    run_until(fx, pred_gen, GUARD_MS);
    if (fx->guard_fired) fail_msg("server %u: gen %u after %u ms, want %u", idx, fx->seen[idx], GUARD_MS, gen);
}

static int pred_never(struct fixture *fx) { (void)fx; return 0; }

/* Runs the loop for ms, whatever happens. */
static void run_for(struct fixture *fx, unsigned ms)
{
    run_until(fx, pred_never, ms);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    char servers[64], err[256] = "";

    assert_non_null(fx);
    fx->loop = loop_new();
    assert_non_null(fx->loop);
    fx->dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fx->dns_fd >= 0);
    assert_int_equal(bind(fx->dns_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fx->dns_fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", ntohs(sin.sin_port));
    struct resolver_opts ro = { .servers = servers, .timeout_ms = 1000, .cache_entries = 16 };
    fx->r = resolver_new(fx->loop, &ro, err, sizeof(err));
    if (!fx->r) fail_msg("resolver_new: %s", err);
    fx->srv.lfd = fx->srv2.lfd = -1;
    for (size_t i = 0; i < MAX_CONNS; i++) fx->srv.conns[i].io.fd = fx->srv2.conns[i].io.fd = -1;
    loop_timer_init(&fx->guard, guard_cb, fx);
    loop_timer_init(&fx->poll, poll_cb, fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    health_stop(fx->hc);
    tsrv_stop(&fx->srv);
    tsrv_stop(&fx->srv2);
    resolver_free(fx->r);
    loop_timer_cancel(fx->loop, &fx->guard);
    loop_timer_cancel(fx->loop, &fx->poll);
    close(fx->dns_fd);
    loop_free(fx->loop);
    free(fx);
    return 0;
}

static void start_checker(struct fixture *fx, const struct host_port *hp, size_t n,
                          const struct health_opts *o)
{
    char err[256] = "";
    assert_true(n <= MAX_SRV);
    fx->nsrv = n;
    fx->t0 = clock_now_ms();
    fx->hc = health_start(fx->loop, fx->r, "web", hp, n, fx->shared, o, err, sizeof(err));
    if (!fx->hc) fail_msg("health_start: %s", err);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fx->shared[i].up, 1);
        assert_int_equal(fx->shared[i].gen, 0);
    }
}

static struct host_port hp_of(const char *host, uint16_t port)
{
    struct host_port hp = { .port = port };
    snprintf(hp.host, sizeof(hp.host), "%s", host);
    return hp;
}

static int dns_queries(const struct fixture *fx)
{
    char buf[512];
    int n = 0;
    while (recv(fx->dns_fd, buf, sizeof(buf), 0) > 0) n++;
    return n;
}

static size_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    size_t n = 0;
    assert_non_null(d);
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* Log lines go to fd 2: capture them in a temporary file. */
struct capture {
    int saved, fd;
};

static void capture_begin(struct capture *c)
{
    log_set_level(LOG_INFO);
    char path[] = "/tmp/test_health_logXXXXXX";
    c->fd = mkstemp(path);
    assert_true(c->fd >= 0);
    unlink(path);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->fd, 2), 2);
}

static void capture_end(struct capture *c, char *out, size_t outlen)
{
    log_set_level(LOG_ERROR);
    dup2(c->saved, 2);
    close(c->saved);
    ssize_t r = pread(c->fd, out, outlen - 1, 0);
    out[r > 0 ? (size_t)r : 0] = '\0';
    close(c->fd);
}

/* ---- tests ---- */

/* A listening server stays up; every check bumps gen by one, one interval
 * apart, and each check is one connection. */
static void test_listening_stays_up(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 50, .rise = 2, .fall = 3 };
    tsrv_start(&fx->srv, fx->loop, TS_CLOSE);
    struct host_port hp = hp_of("127.0.0.1", fx->srv.port);
    start_checker(fx, &hp, 1, &o);

    run_until_gen(fx, 0, 6);
    for (unsigned g = 1; g <= 6; g++) assert_int_equal(fx->hist[0][g], 1);
    for (unsigned g = 2; g <= 6; g++) {
        uint64_t gap = fx->at[0][g] - fx->at[0][g - 1];
        if (gap < 35) fail_msg("checks %u and %u only %llu ms apart", g - 1, g, (unsigned long long)gap);
    }
    run_for(fx, 10);
    assert_true(fx->srv.accepted >= 6 && fx->srv.accepted <= 7);
}

/* gen increases by exactly one after each check, failed ones included. */
static void test_gen_counts_checks(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 30, .fall = 100 };
    struct host_port hp = hp_of("127.0.0.1", closed_port());
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 5);
    assert_int_equal(health_gen(&fx->shared[0]), 5);
    assert_int_equal(health_is_up(&fx->shared[0]), 1);     /* 5 failures < fall 100 */
    /* Gen 1 is the first check, right at start (stagger 0 for server 0). */
    assert_true(fx->at[0][1] - fx->t0 < 25);
}

static int pred_down(struct fixture *fx) { return !health_is_up(&fx->shared[fx->want_idx]); }

/* Listener closed: down is published at the fall-th failure, not before;
 * listening again: up at the rise-th success. Log lines as in HAProxy. */
static void test_fall_and_rise_exact(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 50, .rise = 2, .fall = 3 };
    struct capture cap;
    char logs[4096], want[160];

    tsrv_start(&fx->srv, fx->loop, TS_CLOSE);
    struct host_port hp = hp_of("127.0.0.1", fx->srv.port);
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 2);
    assert_int_equal(fx->hist[0][1] & fx->hist[0][2], 1);

    /* Between two checks (the next one is ~50 ms away). */
    capture_begin(&cap);
    tsrv_unlisten(&fx->srv);
    unsigned g0 = fx->seen[0];
    run_until_gen(fx, 0, g0 + 3);
    assert_int_equal(fx->hist[0][g0 + 1], 1);
    assert_int_equal(fx->hist[0][g0 + 2], 1);
    assert_int_equal(fx->hist[0][g0 + 3], 0);

    tsrv_listen(&fx->srv);
    unsigned g1 = fx->seen[0];
    run_until_gen(fx, 0, g1 + 3);
    assert_int_equal(fx->hist[0][g1 + 1], 0);
    assert_int_equal(fx->hist[0][g1 + 2], 1);
    assert_int_equal(fx->hist[0][g1 + 3], 1);
    capture_end(&cap, logs, sizeof(logs));

    snprintf(want, sizeof(want), "upstream web/127.0.0.1:%u is DOWN (connect refused, 0 of 1 up)",
             fx->srv.port);
    if (!strstr(logs, want)) fail_msg("no '%s' in logs:\n%s", want, logs);
    snprintf(want, sizeof(want), "upstream web/127.0.0.1:%u is UP (1 of 1 up)", fx->srv.port);
    if (!strstr(logs, want)) fail_msg("no '%s' in logs:\n%s", want, logs);
    assert_non_null(strstr(logs, " warn "));
    assert_non_null(strstr(logs, " info "));
}

/* Two servers, one refusing: only that one goes down; the count in the log
 * line is over the group. */
static void test_two_servers_one_down(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 40, .rise = 1, .fall = 2 };
    struct capture cap;
    char logs[4096], want[160];
    tsrv_start(&fx->srv, fx->loop, TS_CLOSE);
    struct host_port hp[2] = { hp_of("127.0.0.1", fx->srv.port), hp_of("127.0.0.1", closed_port()) };

    capture_begin(&cap);
    start_checker(fx, hp, 2, &o);
    fx->want_idx = 1;
    run_until(fx, pred_down, GUARD_MS);
    capture_end(&cap, logs, sizeof(logs));
    assert_false(fx->guard_fired);
    assert_int_equal(fx->seen[1], 2);
    assert_int_equal(health_is_up(&fx->shared[0]), 1);
    snprintf(want, sizeof(want), "upstream web/127.0.0.1:%u is DOWN (connect refused, 1 of 2 up)",
             hp[1].port);
    if (!strstr(logs, want)) fail_msg("no '%s' in logs:\n%s", want, logs);
}

/* send + expect: "OK" passes with expect "OK" (here split over two writes,
 * the second sent only after the request arrived), and the request bytes
 * reach the server. */
static void test_expect_ok(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 40, .rise = 1, .fall = 1, .timeout_ms = 500,
                             .send = "PING\r\n", .send_len = 6, .expect = "OK" };
    tsrv_start(&fx->srv, fx->loop, TS_ANSWER);
    fx->srv.answer = "hello O";
    fx->srv.answer2 = "K there\r\n";
    struct host_port hp = hp_of("127.0.0.1", fx->srv.port);
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 3);
    for (unsigned g = 1; g <= 3; g++) assert_int_equal(fx->hist[0][g], 1);
    assert_true(fx->srv.rx_len >= 12);
    assert_memory_equal(fx->srv.rx, "PING\r\nPING\r\n", 12);
    /* Passed checks finish well before their deadline. */
    assert_true(fx->at[0][1] - fx->t0 < 250);
}

/* The server answers "OK" and closes: expect "NOPE" fails at once (EOF),
 * without waiting for the deadline. */
static void test_expect_mismatch(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 1000, .timeout_ms = 1000, .rise = 1, .fall = 1,
                             .expect = "NOPE" };
    tsrv_start(&fx->srv, fx->loop, TS_ANSWER);
    fx->srv.answer = "OK\r\n";
    struct host_port hp = hp_of("127.0.0.1", fx->srv.port);
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 1);
    assert_int_equal(fx->hist[0][1], 0);
    assert_true(fx->at[0][1] - fx->t0 < 500);
}

/* Accepts but never answers: with expect set, the check fails at its
 * deadline, not before. The request was sent. */
static void test_silent_server_times_out(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 500, .timeout_ms = 80, .rise = 1, .fall = 1,
                             .send = "HELO\n", .send_len = 5, .expect = "OK" };
    tsrv_start(&fx->srv, fx->loop, TS_SILENT);
    struct host_port hp = hp_of("127.0.0.1", fx->srv.port);
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 1);
    assert_int_equal(fx->hist[0][1], 0);
    uint64_t took = fx->at[0][1] - fx->t0;
    if (took < 79 || took > 400) fail_msg("timed out after %llu ms, want ~80", (unsigned long long)took);
    assert_int_equal(fx->srv.accepted, 1);
    run_for(fx, 20);
    assert_memory_equal(fx->srv.rx, "HELO\n", 5);
    assert_int_equal(tsrv_open_conns(&fx->srv), 0);     /* the checker closed (reset) it */
}

/* Without expect, a silent server passes: connecting is enough. */
static void test_connect_only_passes_silent(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 30, .rise = 1, .fall = 1 };
    tsrv_start(&fx->srv, fx->loop, TS_SILENT);
    struct host_port hp = hp_of("127.0.0.1", fx->srv.port);
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 3);
    for (unsigned g = 1; g <= 3; g++) assert_int_equal(fx->hist[0][g], 1);
    run_for(fx, 20);
    assert_int_equal(tsrv_open_conns(&fx->srv), 0);     /* FIN seen, server closed */
}

/* A name: "localhost" comes from /etc/hosts, no DNS query is sent. */
static void test_localhost_name(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 30, .rise = 1, .fall = 1 };
    tsrv_start(&fx->srv, fx->loop, TS_CLOSE);
    struct host_port hp = hp_of("localhost", fx->srv.port);
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 3);
    for (unsigned g = 1; g <= 3; g++) assert_int_equal(fx->hist[0][g], 1);
    run_for(fx, 10);
    assert_true(fx->srv.accepted >= 3);
    assert_int_equal(dns_queries(fx), 0);
}

/* A name whose DNS never answers fails at the check's deadline. */
static void test_resolve_timeout(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 100, .timeout_ms = 50, .rise = 1, .fall = 1 };
    struct host_port hp = hp_of("blackhole.test", 80);
    start_checker(fx, &hp, 1, &o);
    run_until_gen(fx, 0, 1);
    assert_int_equal(fx->hist[0][1], 0);
    assert_true(fx->at[0][1] - fx->t0 >= 49);
    assert_true(dns_queries(fx) >= 1);
}

static int pred_in_flight(struct fixture *fx)
{
    return tsrv_open_conns(&fx->srv) >= 1 && resolver_outstanding(fx->r) >= 1;
}

/* health_stop with a lookup and a connection in flight, from inside a
 * loop callback: nothing is published afterwards, every socket is closed,
 * ASan sees no leak and no use after free. */
static void test_stop_in_flight(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 40, .timeout_ms = 2000, .rise = 1, .fall = 1,
                             .expect = "OK" };
    tsrv_start(&fx->srv, fx->loop, TS_SILENT);
    size_t fds = count_fds();
    struct host_port hp[2] = { hp_of("127.0.0.1", fx->srv.port), hp_of("blackhole.test", 80) };
    start_checker(fx, hp, 2, &o);
    fx->stop_in_poll = 1;
    run_until(fx, pred_in_flight, GUARD_MS);
    assert_false(fx->guard_fired);
    assert_null(fx->hc);                               /* stopped by poll_cb */
    fx->stop_in_poll = 0;
    run_for(fx, 50);                                   /* stale events, deferred free */
    assert_int_equal(health_gen(&fx->shared[0]), 0);
    assert_int_equal(health_gen(&fx->shared[1]), 0);
    assert_int_equal(tsrv_open_conns(&fx->srv), 0);   /* the check socket was reset */
    /* c-ares keeps its own socket to the DNS server: free it to count. */
    resolver_free(fx->r);
    fx->r = NULL;
    assert_int_equal(count_fds(), fds);
}

/* Stopped before the loop ever ran: only timers to cancel. */
static void test_stop_before_run(void **state)
{
    struct fixture *fx = *state;
    struct host_port hp = hp_of("127.0.0.1", closed_port());
    start_checker(fx, &hp, 1, NULL);
    health_stop(fx->hc);
    fx->hc = NULL;
    run_for(fx, 20);
    assert_int_equal(health_gen(&fx->shared[0]), 0);
    health_stop(NULL);
}

/* First checks are spread over the interval, not fired together. */
static void test_stagger(void **state)
{
    struct fixture *fx = *state;
    struct health_opts o = { .interval_ms = 200 };
    tsrv_start(&fx->srv, fx->loop, TS_CLOSE);
    struct host_port hp[4];
    for (size_t i = 0; i < 4; i++) hp[i] = hp_of("127.0.0.1", fx->srv.port);
    start_checker(fx, hp, 4, &o);
    run_until_gen(fx, 3, 1);
    for (size_t i = 0; i < 4; i++) assert_int_equal(fx->seen[i], 1);
    for (size_t i = 1; i < 4; i++) {
        uint64_t gap = fx->at[i][1] - fx->at[i - 1][1];
        if (gap < 30 || gap > 90)
            fail_msg("first checks of servers %zu and %zu %llu ms apart, want ~50", i - 1, i,
                     (unsigned long long)gap);
    }
}

static void test_bad_options(void **state)
{
    struct fixture *fx = *state;
    struct health_shared sh[LB_MAX_SERVERS + 1];
    struct host_port *hp = calloc(LB_MAX_SERVERS + 1, sizeof(*hp));
    char big[HEALTH_EXPECT_MAX + 2], err[256];
    assert_non_null(hp);
    for (size_t i = 0; i <= LB_MAX_SERVERS; i++) hp[i] = hp_of("127.0.0.1", 80);

    err[0] = '\0';
    assert_null(health_start(fx->loop, fx->r, "g", hp, 0, sh, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no servers"));
    err[0] = '\0';
    assert_null(health_start(fx->loop, fx->r, "g", hp, LB_MAX_SERVERS + 1, sh, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "at most"));

    struct health_opts o = { .send = big, .send_len = HEALTH_SEND_MAX + 1 };
    err[0] = '\0';
    assert_null(health_start(fx->loop, fx->r, "g", hp, 1, sh, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "send"));

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    o = (struct health_opts){ .expect = big };
    err[0] = '\0';
    assert_null(health_start(fx->loop, fx->r, "g", hp, 1, sh, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "expect"));

    hp[1].port = 0;
    err[0] = '\0';
    assert_null(health_start(fx->loop, fx->r, "g", hp, 2, sh, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "server 2: port 0"));

    hp[1] = hp_of("", 80);
    err[0] = '\0';
    assert_null(health_start(fx->loop, fx->r, "g", hp, 2, sh, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "server 2: no host"));

    /* The largest allowed sizes are fine. */
    big[HEALTH_EXPECT_MAX] = '\0';
    o = (struct health_opts){ .send = big, .send_len = HEALTH_SEND_MAX, .expect = big };
    struct health_checker *hc = health_start(fx->loop, fx->r, "g", hp, 1, sh, &o, err, sizeof(err));
    assert_non_null(hc);
    health_stop(hc);
    free(hp);
}

/* health_sync: what a worker does with the shared array (pure). */
static void test_sync(void **state)
{
    (void)state;
    struct lb_server srv[3] = { { .weight = 1 }, { .weight = 1 }, { .weight = 1 } };
    struct lb_group g;
    struct health_shared sh[3] = { { .up = 1 }, { .up = 1 }, { .up = 1 } };
    unsigned seen[3] = { 0 };
    char err[128];
    assert_int_equal(lb_group_init(&g, srv, 3, NULL, err, sizeof(err)), 0);

    assert_int_equal(health_sync(sh, seen, &g), 0);
    sh[1].up = 0;
    sh[1].gen = 1;
    assert_int_equal(health_sync(sh, seen, &g), 1);
    assert_false(lb_is_up(&g, 1));
    assert_int_equal(health_sync(sh, seen, &g), 0);      /* gen unchanged */

    /* Passive ejection by this worker lasts until a published check that
     * passed: a failed one (the server still "up" until `fall` of them)
     * must not put it back. */
    lb_set_up(&g, 0, 0);
    assert_int_equal(health_sync(sh, seen, &g), 0);
    assert_false(lb_is_up(&g, 0));
    sh[0].last_ok = 0;
    sh[0].gen = 1;
    assert_int_equal(health_sync(sh, seen, &g), 0);
    assert_false(lb_is_up(&g, 0));
    sh[0].last_ok = 1;
    sh[0].gen = 2;
    assert_int_equal(health_sync(sh, seen, &g), 1);
    assert_true(lb_is_up(&g, 0));

    sh[1].up = 1;                                        /* the checker brought it back: */
    sh[1].last_ok = 1;                                   /* its latest check passed */
    sh[1].gen = 2;
    sh[2].gen = 7;                                       /* still up: no change */
    assert_int_equal(health_sync(sh, seen, &g), 1);
    assert_true(lb_is_up(&g, 1) && lb_is_up(&g, 2));
    assert_int_equal(seen[2], 7);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_listening_stays_up),
        T(test_gen_counts_checks),
        T(test_fall_and_rise_exact),
        T(test_two_servers_one_down),
        T(test_expect_ok),
        T(test_expect_mismatch),
        T(test_silent_server_times_out),
        T(test_connect_only_passes_silent),
        T(test_localhost_name),
        T(test_resolve_timeout),
        T(test_stop_in_flight),
        T(test_stop_before_run),
        T(test_stagger),
        T(test_bad_options),
        T(test_sync),
    };
    log_set_level(LOG_ERROR);                   /* tests that read the log raise it */
    alarm(60);                                  /* last resort if a guard fails */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
