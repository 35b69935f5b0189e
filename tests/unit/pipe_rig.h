/* pipe_rig.h - the rig shared by test_pipe.c and test_pipe_stages.c.
 *
 * pipe_pump() takes all it needs in struct pump_ctx (pools, endpoints,
 * budget, the stages' clock), so the tests drive it directly, as
 * sess_pump_ex() does, over socket pairs:
 *
 *     in  ->  [src] pipe_pump() over h's stages [dst]  ->  out
 *
 * The test writes `in` and reads `out`; the pump reads `src` and writes
 * `dst` through two socket endpoints (endpoint_fd_socket). All fds are
 * non-blocking and no event loop runs: the test calls pipe_pump() in bounded
 * loops. AF_UNIX pairs move bytes synchronously, so most tests need no
 * waiting at all; TCP loopback pairs (splice, RST) wait for readiness with
 * poll() and a timeout, never with a sleep. A SOCK_SEQPACKET sink keeps
 * write boundaries, which shows what left in one write (a prefix with the
 * first input, one toxic piece per write, one Shadowsocks chunk per read).
 *
 * The clock is c.now_us, set by the test: stages that wait (a prefix, the
 * toxic queue) are driven with explicit times.
 *
 * Every test ends with rig_free(): pipe_release() (twice: the second must
 * free nothing), then every buffer and pipe must be back in its pool and
 * every stage state handed to the half freed exactly once (g_made counts
 * states handed over, g_frees counts frees).
 *
 * Helpers are static inline so that each test file may use a subset.
 */
#ifndef FERRY_TEST_PIPE_RIG_H
#define FERRY_TEST_PIPE_RIG_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay/endpoint.h"
#include "relay/pipe.h"

#define KiB 1024u
#define SPLICE_THRESHOLD (16u * KiB)   /* as in pipe.c */

/* Stage states handed to a half, and stage states freed. */
static int g_made, g_frees;

/* ---- sockets ---- */

static inline void nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static inline void unix_pair(int type, int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), 0);
    nonblock(fds[0]);
    nonblock(fds[1]);
}

/* A connected TCP loopback pair; fds[0] connected, fds[1] accepted. */
static inline void tcp_pair(int fds[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}, peer;
    socklen_t alen = sizeof(a), plen = sizeof(peer);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fds[0] >= 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
    fds[1] = accept4(l, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    assert_true(fds[1] >= 0);
    close(l);
    nonblock(fds[0]);
    nonblock(fds[1]);
}

/* Bytes waiting to be read on fd. */
static inline size_t inq(int fd)
{
    int n = -1;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    assert_true(n >= 0);
    return (size_t)n;
}

/* Whether fd turns readable within ms (TCP loopback only: unix pairs
 * deliver within the send call). */
static inline int wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

static inline void set_int_opt(int fd, int level, int opt, int v)
{
    assert_int_equal(setsockopt(fd, level, opt, &v, sizeof(v)), 0);
}

/* close() with SO_LINGER 0: a TCP socket sends RST. */
static inline void close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

/* ---- the rig ---- */

struct rig {
    int in, src;            /* the test writes `in`; the pump reads `src` */
    int dst, out;           /* the pump writes `dst`; the test reads `out` */
    struct endpoint src_ep, dst_ep;
    struct buf_pool bufs;
    struct kpipe_pool pipes;
    struct half h;
    struct pump_ctx c;
    size_t budget;          /* c.budget at each pump() */
    int in_shut;            /* shutdown(in, SHUT_WR) done */
    int out_eof;            /* `out` read EOF */
};

enum { SINK_STREAM, SINK_SEQPACKET, RIG_TCP };

/* A rig whose pools lend buffers of bufsize bytes. Resets the stage
 * counters: a test makes its stages after rig_init(). */
static inline void rig_init(struct rig *r, int kind, uint32_t bufsize)
{
    int a[2], b[2];
    memset(r, 0, sizeof(*r));
    if (kind == RIG_TCP) {
        tcp_pair(a);
        tcp_pair(b);
    } else {
        unix_pair(SOCK_STREAM, a);
        unix_pair(kind == SINK_SEQPACKET ? SOCK_SEQPACKET : SOCK_STREAM, b);
    }
    r->in = a[0];
    r->src = a[1];
    r->dst = b[0];
    r->out = b[1];
    endpoint_fd_socket(&r->src_ep, &r->src);
    endpoint_fd_socket(&r->dst_ep, &r->dst);
    buf_pool_init(&r->bufs, bufsize, 4);
    kpipe_pool_init(&r->pipes, 4, 0);
    r->budget = 512 * KiB;               /* session.c's PUMP_BUDGET */
    r->c.bufs = &r->bufs;
    r->c.pipes = &r->pipes;
    r->c.src = &r->src_ep;
    r->c.dst = &r->dst_ep;
    r->c.up = 1;
    g_made = g_frees = 0;
}

/* Closes what is still open; the test may have closed or reset one side
 * itself (then it set that fd to -1). */
static inline void rig_close_fds(struct rig *r)
{
    int *fds[] = {&r->in, &r->src, &r->dst, &r->out};
    for (size_t i = 0; i < 4; i++) {
        if (*fds[i] >= 0) close(*fds[i]);
        *fds[i] = -1;
    }
}

/* Releases the half and checks that nothing is left lent out and that
 * every stage state was freed exactly once. */
static inline void rig_free(struct rig *r)
{
    pipe_release(&r->h, &r->bufs, &r->pipes);
    assert_int_equal(g_frees, g_made);
    pipe_release(&r->h, &r->bufs, &r->pipes);   /* frees nothing twice */
    assert_int_equal(g_frees, g_made);
    assert_int_equal(pipe_nstages(&r->h), 0);
    assert_null(r->h.head);
    assert_null(r->h.chain);
    assert_null(r->h.lead);
    assert_null(r->h.kp);
    assert_int_equal(r->bufs.in_use, 0);
    assert_int_equal(r->pipes.in_use, 0);
    buf_pool_destroy(&r->bufs);
    kpipe_pool_destroy(&r->pipes);
    rig_close_fds(r);
}

/* One pipe_pump() call with a fresh per-call context, as pump_ctx_init()
 * fills it; the clock (c.now_us) is the test's. */
static inline enum pump_result pump(struct rig *r)
{
    r->c.budget = r->budget;
    r->c.err = 0;
    r->c.progressed = 0;
    r->c.src_drained = 0;
    r->c.last_ask = 0;
    r->c.stage_role = 0xff;
    return pipe_pump(&r->h, &r->c);
}

/* Writes what `in` takes of p[0, n); returns how much. */
static inline size_t feed(struct rig *r, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(r->in, p + done, n - done, MSG_NOSIGNAL);
        if (w < 0) {
            assert_true(errno == EAGAIN || errno == EINTR);
            if (errno == EAGAIN) break;
            continue;
        }
        done += (size_t)w;
    }
    return done;
}

static inline void feed_all(struct rig *r, const uint8_t *p, size_t n)
{
    assert_int_equal(feed(r, p, n), n);
}

static inline void feed_str(struct rig *r, const char *s)
{
    feed_all(r, (const uint8_t *)s, strlen(s));
}

static inline void shut_in(struct rig *r)
{
    assert_int_equal(shutdown(r->in, SHUT_WR), 0);
    r->in_shut = 1;
}

/* Reads everything `out` has now into p; notes EOF. More than cap bytes
 * fail the test. */
static inline size_t collect(struct rig *r, uint8_t *p, size_t cap)
{
    size_t got = 0;
    for (;;) {
        uint8_t spare;
        int full = got == cap;
        ssize_t n = recv(r->out, full ? &spare : p + got, full ? 1 : cap - got, 0);
        if (n == 0) {
            r->out_eof = 1;
            break;
        }
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == EINTR);
            if (errno == EAGAIN) break;
            continue;
        }
        if (full) fail_msg("more than the %zu bytes expected", cap);
        got += (size_t)n;
    }
    return got;
}

/* One recv() on `out`: one record on a SOCK_SEQPACKET sink. -1 when
 * nothing is there (EAGAIN), 0 at EOF. */
static inline ssize_t recv_one(struct rig *r, uint8_t *p, size_t cap)
{
    ssize_t n = recv(r->out, p, cap, 0);
    if (n < 0) assert_int_equal(errno, EAGAIN);
    return n;
}

/* The next record at a SOCK_SEQPACKET sink is exactly want[0, n). */
static inline void expect_record_bytes(struct rig *r, const uint8_t *want, size_t n)
{
    uint8_t b[512];
    assert_true(n <= sizeof(b));
    assert_int_equal(recv_one(r, b, sizeof(b)), n);
    assert_memory_equal(b, want, n);
}

/* Fills `dst`'s send buffer (the sink's peer reads nothing meanwhile) so
 * that the pump's next write gets EAGAIN; returns the junk bytes written. */
static inline size_t fill_sink(struct rig *r)
{
    static const uint8_t junk[1024];
    size_t n = 0;
    for (;;) {
        ssize_t w = send(r->dst, junk, sizeof(junk), MSG_NOSIGNAL);
        if (w < 0) {
            assert_int_equal(errno, EAGAIN);
            return n;
        }
        n += (size_t)w;
    }
}

/* Reads and drops n bytes at `out` (what fill_sink() wrote). */
static inline void drop_out(struct rig *r, size_t n)
{
    uint8_t b[1024];
    while (n) {
        ssize_t got = recv(r->out, b, n < sizeof(b) ? n : sizeof(b), 0);
        assert_true(got > 0);
        n -= (size_t)got;
    }
}

/* Moves in[0, n) through the pump, then EOF if eof: feeds what the source
 * takes, pumps, collects what arrived, until `want` bytes (and EOF if eof)
 * are at `out`. Bounded: at most 20000 rounds, and 5 s in all of waiting
 * for the kernel (TCP loopback) when a round moved nothing. Returns the
 * bytes received. */
static inline size_t transfer(struct rig *r, const uint8_t *in, size_t n, int eof, uint8_t *out, size_t want)
{
    size_t sent = 0, got = 0;
    int waits = 0;
    for (int round = 0; round < 20000; round++) {
        size_t s0 = sent, g0 = got;
        sent += feed(r, in + sent, n - sent);
        if (eof && sent == n && !r->in_shut) shut_in(r);
        enum pump_result pr = pump(r);
        if (pr != PUMP_OK) fail_msg("pump: %d (errno %d) after %zu bytes", (int)pr, r->c.err, got);
        got += collect(r, out + got, want - got);
        if (got == want && (!eof || r->out_eof)) return got;
        if (sent == s0 && got == g0 && !r->c.progressed) {
            /* TCP loopback: the bytes are on their way; wait for either end. */
            struct pollfd p[2] = {{.fd = r->src, .events = POLLIN}, {.fd = r->out, .events = POLLIN}};
            if (waits >= 50) break;
            if (poll(p, 2, 100) == 0) waits++;
        }
    }
    fail_msg("transfer stuck: sent %zu/%zu, got %zu/%zu, eof %d", sent, n, got, want, r->out_eof);
    return got;
}

/* A reproducible byte pattern (xorshift), different per seed. */
static inline void pattern(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static uint8_t g_in[4u << 20], g_out[4u << 20], g_want[4u << 20];

/* ---- a test stage: XOR with a key, and knobs ---- */

/* Emits the prefix (once) in front of its first output, like ss-local's
 * address header: with input, prefix + input in one output; with no input
 * the prefix waits for the input's end or, if set, until wait_until_us
 * (next_wakeup), then goes alone (counted in prefix_alone). Takes input in
 * multiples of `unit` (a framed decoder: a partial frame waits for the rest), at most `limit` bytes in all (then
 * STAGE_CLOSE, like limit_data). Other modes: `hold` takes nothing; `keep`
 * keeps its input inside (up to sizeof(kept)) and lets it out only once the
 * input has ended; `fail` is returned on the first call with input.
 * Records what it was given and made. */
struct tstage {
    uint8_t key;
    size_t unit;
    size_t max_in;              /* what max_input() reports (0: outcap) */
    size_t prefix_len;
    uint8_t prefix[32];
    uint64_t wait_until_us;     /* 0: the prefix waits for input or its end */
    size_t limit, passed;       /* limit 0: none */
    int hold;
    int keep;
    size_t nkept;
    uint8_t kept[1024];
    enum stage_status fail;
    size_t calls, in_calls, prefix_alone, max_inlen, max_made;
};

static inline void ts_xor(const struct tstage *t, const uint8_t *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = in[i] ^ t->key;
}

/* The prefix, if it may go now: 0 made, or its length. -1: it waits. */
static inline long ts_prefix(struct tstage *t, struct stage_io *io)
{
    if (!t->prefix_len) return 0;
    if (!io->inlen && !io->in_eof && (!t->wait_until_us || io->now_us < t->wait_until_us)) return -1;
    if (io->outcap < t->prefix_len) return -1;
    memcpy(io->out, t->prefix, t->prefix_len);
    if (!io->inlen) t->prefix_alone++;
    long n = (long)t->prefix_len;
    t->prefix_len = 0;
    return n;
}

/* keep: takes what fits inside; once the input has ended, lets it out. */
static inline void ts_keep(struct tstage *t, struct stage_io *io, size_t o)
{
    size_t take = io->inlen < sizeof(t->kept) - t->nkept ? io->inlen : sizeof(t->kept) - t->nkept;
    if (take) memcpy(t->kept + t->nkept, io->in, take);
    t->nkept += take;
    io->used = take;
    if (!io->in_eof || take < io->inlen) return;
    size_t n = t->nkept < io->outcap - o ? t->nkept : io->outcap - o;
    ts_xor(t, t->kept, io->out + o, n);
    memmove(t->kept, t->kept + n, t->nkept - n);
    t->nkept -= n;
    io->made = o + n;
}

static inline enum stage_status ts_process(void *state, struct stage_io *io)
{
    struct tstage *t = state;
    t->calls++;
    if (io->inlen) t->in_calls++;
    if (io->inlen > t->max_inlen) t->max_inlen = io->inlen;
    if (t->fail != STAGE_OK && io->inlen) return t->fail;
    long p = ts_prefix(t, io);
    if (p < 0) return STAGE_OK;
    size_t o = (size_t)p;
    io->made = o;
    if (t->keep) {
        ts_keep(t, io, o);
    } else if (!t->hold) {
        size_t take = io->inlen < io->outcap - o ? io->inlen : io->outcap - o;
        if (t->limit && take > t->limit - t->passed) take = t->limit - t->passed;
        take -= take % t->unit;
        ts_xor(t, io->in, io->out + o, take);
        io->used = take;
        io->made = o + take;
        t->passed += take;
    }
    if (io->made > t->max_made) t->max_made = io->made;
    io->out_eof = io->in_eof && io->used == io->inlen && !t->prefix_len && !t->nkept;
    return t->limit && t->passed == t->limit ? STAGE_CLOSE : STAGE_OK;
}

static inline uint64_t ts_wakeup(const void *state)
{
    const struct tstage *t = state;
    return t->prefix_len && t->wait_until_us ? t->wait_until_us : UINT64_MAX;
}

static inline size_t ts_max_input(const void *state, size_t outcap)
{
    const struct tstage *t = state;
    return t->max_in && t->max_in < outcap ? t->max_in : outcap;
}

static inline void ts_free(void *state)
{
    g_frees++;
    free(state);
}

#define TS_OPS(r)                                                                                       \
    {.name = "test", .role = (r), .process = ts_process, .next_wakeup = ts_wakeup,                     \
     .max_input = ts_max_input, .free = ts_free}

/* One ops table per role: the role is the ops'. */
static const struct stage_ops ts_ops[] = {
    TS_OPS(STAGE_DECODER), TS_OPS(STAGE_FILTER), TS_OPS(STAGE_TOXICS), TS_OPS(STAGE_ENCODER),
};

static inline struct tstage *ts_new(uint8_t key, const char *prefix)
{
    struct tstage *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->key = key;
    t->unit = 1;
    t->prefix_len = prefix ? strlen(prefix) : 0;
    assert_true(t->prefix_len <= sizeof(t->prefix));
    if (prefix) memcpy(t->prefix, prefix, t->prefix_len);
    return t;
}

/* Hands a stage state to the half (counted for rig_free's check). */
static inline void add_stage(struct rig *r, const struct stage_ops *ops, void *state, int pending_is_input)
{
    g_made++;
    assert_int_equal(pipe_add_stage(&r->h, ops, state, pending_is_input), 0);
}

/* A new XOR stage of `role` at its place in the chain; returns it. */
static inline struct tstage *add_ts(struct rig *r, uint8_t role, uint8_t key, const char *prefix)
{
    struct tstage *t = ts_new(key, prefix);
    add_stage(r, &ts_ops[role], t, 1);
    return t;
}

/* What an XOR stage makes of in[0, n) behind prefix: into g_want. */
static inline size_t expect_xor(const char *prefix, const uint8_t *in, size_t n, uint8_t key)
{
    size_t p = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < p; i++) g_want[i] = (uint8_t)prefix[i];
    for (size_t i = 0; i < n; i++) g_want[p + i] = in[i] ^ key;
    return p + n;
}

/* The next record at a SOCK_SEQPACKET sink is prefix (or none) + in XOR key. */
static inline void expect_record(struct rig *r, const char *prefix, const char *in, uint8_t key)
{
    size_t want = expect_xor(prefix, (const uint8_t *)in, strlen(in), key);
    expect_record_bytes(r, g_want, want);
}

#endif
