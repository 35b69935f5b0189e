/* test_pipe.c - unit tests for relay/pipe: the byte mover, pipe_pump().
 *
 * pipe_pump() takes all it needs in struct pump_ctx (pools, fds, budget,
 * the toxics' clock), so these tests drive it directly, as sess_pump_ex()
 * does, over socket pairs: the test writes the source's peer ("in") and
 * reads the sink's peer ("out"). All fds are non-blocking and no event loop
 * runs: the test calls pipe_pump() in bounded loops. AF_UNIX pairs move
 * bytes synchronously, so most tests need no waiting at all; TCP loopback
 * pairs (splice, RST) wait for readiness with poll() and a timeout, never
 * with a sleep. A SOCK_SEQPACKET sink keeps write boundaries, which shows
 * whether a codec's held prefix left in the same write as the first input.
 *
 * Every test ends with pipe_release() and checks that the half gave back
 * every buffer and pipe it took, and freed its codec state exactly once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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

#include "relay/pipe.h"
#include "stage/toxic.h"
#include "stage/toxq.h"

#define KiB 1024u
#define SPLICE_THRESHOLD (16u * KiB)   /* as in pipe.c */

/* ---- sockets ---- */

static void nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void unix_pair(int type, int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), 0);
    nonblock(fds[0]);
    nonblock(fds[1]);
}

/* A connected TCP loopback pair; fds[0] connected, fds[1] accepted. */
static void tcp_pair(int fds[2])
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
static size_t inq(int fd)
{
    int n = -1;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    assert_true(n >= 0);
    return (size_t)n;
}

/* Whether fd turns readable within ms (TCP loopback only: unix pairs
 * deliver within the send call). */
static int wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

static void set_int_opt(int fd, int level, int opt, int v)
{
    assert_int_equal(setsockopt(fd, level, opt, &v, sizeof(v)), 0);
}

/* close() with SO_LINGER 0: a TCP socket sends RST. */
static void close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

/* ---- the rig: in -> [src] pump [dst] -> out ---- */

struct rig {
    int in, src;            /* the test writes `in`; the pump reads `src` */
    int dst, out;           /* the pump writes `dst`; the test reads `out` */
    struct buf_pool bufs;
    struct kpipe_pool pipes;
    struct half h;
    struct pump_ctx c;
    size_t budget;          /* c.budget at each pump() */
    int in_shut;            /* shutdown(in, SHUT_WR) done */
    int out_eof;            /* `out` read EOF */
};

enum { SINK_STREAM, SINK_SEQPACKET, RIG_TCP };

static void rig_init(struct rig *r, int kind, uint32_t bufsize)
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
    buf_pool_init(&r->bufs, bufsize, 4);
    kpipe_pool_init(&r->pipes, 4, 0);
    r->budget = 512 * KiB;               /* session.c's PUMP_BUDGET */
    r->c.bufs = &r->bufs;
    r->c.pipes = &r->pipes;
    r->c.src_fd = r->src;
    r->c.dst_fd = r->dst;
    r->c.up = 1;
}

/* Closes what is still open; the test may have closed or reset one side
 * itself (then it set that fd to -1). */
static void rig_close_fds(struct rig *r)
{
    int *fds[] = {&r->in, &r->src, &r->dst, &r->out};
    for (size_t i = 0; i < 4; i++) {
        if (*fds[i] >= 0) close(*fds[i]);
        *fds[i] = -1;
    }
}

static int codec_frees;     /* test codec states freed (tc_free) */

/* Releases the half and checks that nothing is left lent out. */
static void rig_free(struct rig *r)
{
    pipe_release(&r->h, &r->bufs, &r->pipes);
    assert_null(r->h.buf);
    assert_null(r->h.raw);
    assert_null(r->h.kp);
    assert_null(r->h.codec_state);
    assert_int_equal(r->bufs.in_use, 0);
    assert_int_equal(r->pipes.in_use, 0);
    buf_pool_destroy(&r->bufs);
    kpipe_pool_destroy(&r->pipes);
    rig_close_fds(r);
}

/* One pipe_pump() call with a fresh per-call context, as pump_ctx_init()
 * fills it. */
static enum pump_result pump(struct rig *r)
{
    r->c.budget = r->budget;
    r->c.err = 0;
    r->c.progressed = 0;
    r->c.src_drained = 0;
    r->c.last_ask = 0;
    r->c.last_read = NULL;
    return pipe_pump(&r->h, &r->c);
}

/* Writes what `in` takes of p[0, n); returns how much. */
static size_t feed(struct rig *r, const uint8_t *p, size_t n)
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

static void feed_all(struct rig *r, const uint8_t *p, size_t n)
{
    assert_int_equal(feed(r, p, n), n);
}

static void shut_in(struct rig *r)
{
    assert_int_equal(shutdown(r->in, SHUT_WR), 0);
    r->in_shut = 1;
}

/* Reads everything `out` has now into p; notes EOF. More than cap bytes
 * fail the test. */
static size_t collect(struct rig *r, uint8_t *p, size_t cap)
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
static ssize_t recv_one(struct rig *r, uint8_t *p, size_t cap)
{
    ssize_t n = recv(r->out, p, cap, 0);
    if (n < 0) assert_int_equal(errno, EAGAIN);
    return n;
}

/* Moves in[0, n) through the pump, then EOF if eof: feeds what the source
 * takes, pumps, collects what arrived, until `want` bytes (and EOF if eof)
 * are at `out`. Bounded: at most 20000 rounds, and 5 s in all of waiting
 * for the kernel (TCP loopback) when a round moved nothing. Returns the
 * bytes received. */
static size_t transfer(struct rig *r, const uint8_t *in, size_t n, int eof, uint8_t *out, size_t want)
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
static void pattern(uint8_t *p, size_t n, uint32_t seed)
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

/* ---- a test codec: XOR with a key, an optional prefix ---- */

/* Emits the prefix (once) in front of its first output, like ss-local's
 * address header: with input, prefix + input in one output; called with no
 * input, the prefix alone. Keeps the prefix if it does not fit in outcap.
 * Consumes input in multiples of `unit` (a framed decoder: a partial frame
 * waits for the rest). Records what it was given. */
struct tcodec {
    uint8_t key;
    size_t unit;
    size_t max_in;          /* what max_input() reports (lim_ops) */
    int fail;               /* process() reports a corrupt stream */
    size_t prefix_len;
    uint8_t prefix[32];
    size_t calls, empty_calls, max_inlen;
};

static int tc_process(void *state, const uint8_t *in, size_t inlen, size_t *used,
                      uint8_t *out, size_t outcap, size_t *made)
{
    struct tcodec *t = state;
    size_t o = 0;
    t->calls++;
    if (inlen == 0) t->empty_calls++;
    if (inlen > t->max_inlen) t->max_inlen = inlen;
    *used = 0;
    *made = 0;
    if (t->fail) return -1;
    if (t->prefix_len) {
        if (outcap < t->prefix_len) return 0;
        memcpy(out, t->prefix, t->prefix_len);
        o = t->prefix_len;
        t->prefix_len = 0;
    }
    size_t take = inlen < outcap - o ? inlen : outcap - o;
    take -= take % t->unit;
    for (size_t i = 0; i < take; i++) out[o + i] = in[i] ^ t->key;
    *used = take;
    *made = o + take;
    return 0;
}

static void tc_free(void *state)
{
    codec_frees++;
    free(state);
}

static size_t tc_max_input(const void *state, size_t outcap)
{
    const struct tcodec *t = state;
    return t->max_in < outcap ? t->max_in : outcap;
}

static const struct codec_ops enc_ops = {.process = tc_process, .free = tc_free, .counts_output = 0};
static const struct codec_ops dec_ops = {.process = tc_process, .free = tc_free, .counts_output = 1};
static const struct codec_ops lim_ops = {
    .process = tc_process, .free = tc_free, .counts_output = 0, .max_input = tc_max_input};

static struct tcodec *tc_new(uint8_t key, const char *prefix)
{
    struct tcodec *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->key = key;
    t->unit = 1;
    t->prefix_len = prefix ? strlen(prefix) : 0;
    assert_true(t->prefix_len <= sizeof(t->prefix));
    if (t->prefix_len) memcpy(t->prefix, prefix, t->prefix_len);
    return t;
}

static void install(struct rig *r, const struct codec_ops *ops, struct tcodec *t)
{
    r->h.codec = ops;
    r->h.codec_state = t;
}

/* What the test codec makes of in[0, n) behind prefix: into g_want. */
static size_t expect_xor(const char *prefix, const uint8_t *in, size_t n, uint8_t key)
{
    size_t p = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < p; i++) g_want[i] = (uint8_t)prefix[i];
    for (size_t i = 0; i < n; i++) g_want[p + i] = in[i] ^ key;
    return p + n;
}

/* ---- 1. copy path ---- */

/* Bytes arrive intact and counted; small reads never turn the direction
 * into a bulk (splice) one; an idle half holds no buffer; EOF follows. */
static void test_copy_intact(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 300 * KiB + 17;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    pattern(g_in, n, 1);
    assert_int_equal(transfer(&r, g_in, n, 1, g_out, n), n);
    assert_memory_equal(g_out, g_in, n);
    assert_int_equal(r.h.bytes, n);
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(r.h.bulk, 0);
    assert_int_equal(r.bufs.in_use, 0);     /* drained: the buffer went back */
    assert_null(r.h.buf);
    rig_free(&r);
}

/* A call reads until the budget is spent: at least budget bytes, and less
 * than one buffer more (the last read may fill a whole buffer). */
static void test_budget(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 64 * KiB, budget = 10000;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.budget = budget;
    pattern(g_in, n, 2);
    feed_all(&r, g_in, n);
    assert_int_equal(pump(&r), PUMP_OK);
    size_t got = collect(&r, g_out, sizeof(g_out));
    assert_true(got >= budget);
    assert_true(got < budget + 4 * KiB);
    assert_int_equal(r.c.budget, 0);
    assert_int_equal(r.h.bytes, got);
    assert_int_equal(inq(r.src), n - got);  /* the rest still waits at the source */
    assert_memory_equal(g_out, g_in, got);

    /* Later calls move the rest, a budget at a time. */
    size_t total = got;
    for (int i = 0; i < 100 && total < n; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        got = collect(&r, g_out + total, sizeof(g_out) - total);
        assert_true(got < budget + 4 * KiB);
        total += got;
    }
    assert_int_equal(total, n);
    assert_memory_equal(g_out, g_in, n);
    rig_free(&r);
}

/* ---- 2. splice path ---- */

/* sndbuf: the sink's SO_SNDBUF (0: default); a small one makes most
 * splice() writes partial. */
static void splice_run(int kind, int sndbuf)
{
    struct rig r;
    const size_t n = 3u << 20;
    rig_init(&r, kind, 64 * KiB);
    if (sndbuf) set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, sndbuf);
    r.c.allow_splice = 1;
    pattern(g_in, n, 3);
    assert_int_equal(transfer(&r, g_in, n, 1, g_out, n), n);
    assert_memory_equal(g_out, g_in, n);
    assert_int_equal(r.h.bytes, n);
    assert_int_equal(r.h.bulk, 1);          /* a read filled 16 KiB or more */
    assert_int_equal(r.h.shut, 1);
    /* A pipe was taken and, emptied, went back to the pool. */
    assert_int_equal(r.pipes.nfree, 1);
    assert_int_equal(r.pipes.in_use, 0);
    rig_free(&r);
}

static void test_splice_unix(void **state)
{
    (void)state;
    splice_run(SINK_STREAM, 0);
}

static void test_splice_small_sink(void **state)
{
    (void)state;
    splice_run(SINK_STREAM, 16 * KiB);
}

static void test_splice_tcp(void **state)
{
    (void)state;
    splice_run(RIG_TCP, 0);
}

/* A direction turns bulk (worth splicing) on the first read of 16 KiB or
 * more, not before. */
static void test_bulk_threshold(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, SINK_STREAM, 64 * KiB);
    r.c.allow_splice = 1;
    pattern(g_in, 2 * SPLICE_THRESHOLD, 14);
    feed_all(&r, g_in, SPLICE_THRESHOLD - 1);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.bulk, 0);
    feed_all(&r, g_in + SPLICE_THRESHOLD - 1, SPLICE_THRESHOLD);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.bulk, 1);
    assert_int_equal(r.pipes.nfree, 0);     /* that read copied */
    feed_all(&r, g_in, 100);
    assert_int_equal(pump(&r), PUMP_OK);    /* this one splices */
    assert_int_equal(r.pipes.nfree, 1);
    assert_null(r.c.last_read);
    size_t want = 2 * SPLICE_THRESHOLD - 1 + 100;
    assert_int_equal(collect(&r, g_out, want), want);
    assert_memory_equal(g_out, g_in, 2 * SPLICE_THRESHOLD - 1);
    assert_memory_equal(g_out + 2 * SPLICE_THRESHOLD - 1, g_in, 100);
    rig_free(&r);
}

/* Without allow_splice a bulk direction keeps copying. */
static void test_splice_not_allowed(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 1u << 20;
    rig_init(&r, SINK_STREAM, 64 * KiB);
    pattern(g_in, n, 4);
    assert_int_equal(transfer(&r, g_in, n, 1, g_out, n), n);
    assert_memory_equal(g_out, g_in, n);
    assert_int_equal(r.h.bulk, 1);
    assert_int_equal(r.pipes.nfree, 0);     /* no pipe ever taken */
    rig_free(&r);
}

/* A spliced read that the sink cannot take waits in the kernel pipe; the
 * source is not read meanwhile; pipe_release closes the full pipe rather
 * than pool it. */
static void test_splice_backpressure_release(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 1u << 20;
    uint8_t *sink = g_out;
    size_t got = 0;
    rig_init(&r, SINK_STREAM, 64 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 16 * KiB);
    r.c.allow_splice = 1;
    pattern(g_in, n, 5);
    size_t sent = feed(&r, g_in, n);
    /* Pump and drain until a pump leaves bytes in the pipe. */
    for (int i = 0; i < 1000 && !r.h.kp; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        if (r.h.kp) break;
        got += collect(&r, sink + got, n - got);
        sent += feed(&r, g_in + sent, n - sent);
    }
    assert_non_null(r.h.kp);
    assert_true(r.h.kp->len > 0);
    assert_null(r.h.buf);                   /* never both */
    assert_int_equal(r.pipes.in_use, 1);
    size_t waiting = inq(r.src);
    assert_int_equal(pump(&r), PUMP_OK);    /* the sink is still full */
    assert_int_equal(r.c.progressed, 0);
    assert_int_equal(inq(r.src), waiting);
    got += collect(&r, sink + got, n - got);
    assert_memory_equal(sink, g_in, got);
    size_t pooled = r.pipes.nfree;
    pipe_release(&r.h, &r.bufs, &r.pipes);
    assert_int_equal(r.pipes.in_use, 0);
    assert_int_equal(r.pipes.nfree, pooled);   /* closed, not pooled: it held bytes */
    rig_free(&r);
}

/* ---- 3. backpressure ---- */

/* A sink that does not take more stops the pump reading its source: the
 * half keeps its bytes, the source keeps the rest; once the sink's peer
 * reads, the transfer completes. */
static void test_backpressure(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 128 * KiB;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    set_int_opt(r.out, SOL_SOCKET, SO_RCVBUF, 4 * KiB);
    pattern(g_in, n, 6);
    feed_all(&r, g_in, n);

    assert_int_equal(pump(&r), PUMP_OK);
    assert_true(half_pending(&r.h));
    assert_false(half_wants_input(&r.h, NULL));
    size_t waiting = inq(r.src);
    assert_true(waiting > 0);
    assert_true(waiting < n);
    assert_int_equal(r.h.bytes, n - waiting);

    /* Again, the sink still full: nothing moves, nothing is read. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(r.c.progressed, 0);
        assert_int_equal(inq(r.src), waiting);
        assert_true(half_pending(&r.h));
    }
    assert_int_equal(r.bufs.in_use, 1);     /* one buffer, however much waits */

    size_t got = 0;
    for (int i = 0; i < 10000 && got < n; i++) {
        got += collect(&r, g_out + got, n - got);
        assert_int_equal(pump(&r), PUMP_OK);
    }
    got += collect(&r, g_out + got, n - got);
    assert_int_equal(got, n);
    assert_memory_equal(g_out, g_in, n);
    assert_int_equal(inq(r.src), 0);
    assert_false(half_pending(&r.h));
    assert_int_equal(r.bufs.in_use, 0);
    rig_free(&r);
}

/* ---- 4. half-close ---- */

/* The source's EOF reaches the sink as shutdown(SHUT_WR), only after every
 * byte before it: while the sink is full, no EOF is read or forwarded. */
static void test_half_close_after_drain(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 96 * KiB;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    pattern(g_in, n, 7);
    feed_all(&r, g_in, n);
    shut_in(&r);

    assert_int_equal(pump(&r), PUMP_OK);
    assert_true(half_pending(&r.h));
    assert_int_equal(r.h.eof, 0);
    assert_int_equal(r.h.shut, 0);
    size_t got = collect(&r, g_out, n);
    assert_true(got < n);
    assert_int_equal(r.out_eof, 0);         /* data first */

    for (int i = 0; i < 10000 && !r.out_eof; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        got += collect(&r, g_out + got, n - got);
        if (r.out_eof) assert_int_equal(got, n);   /* EOF only behind every byte */
    }
    assert_int_equal(r.out_eof, 1);
    assert_int_equal(got, n);
    assert_memory_equal(g_out, g_in, n);
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(r.h.shut, 1);
    assert_false(half_wants_input(&r.h, NULL));

    /* Forwarded once: later pumps do nothing. */
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.c.progressed, 0);
    rig_free(&r);
}

/* close_follows: the session closes both sockets right after, so no
 * shutdown() is issued; the half is still marked shut. */
static void test_half_close_close_follows(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.close_follows = 1;
    feed_all(&r, (const uint8_t *)"bye", 3);
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);    /* a short read: the source is empty for now */
    assert_int_equal(r.h.shut, 0);
    assert_int_equal(pump(&r), PUMP_OK);    /* the EOF */
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(collect(&r, b, sizeof(b)), 3);
    assert_memory_equal(b, "bye", 3);
    assert_int_equal(r.out_eof, 0);         /* no FIN from a shutdown() */
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    rig_free(&r);
}

/* ---- 5. early data: the sink not connected yet ---- */

/* dst_fd -1: one read into the half, held; no further read however much
 * the source has, even while the buffer has room. With the sink, the pump
 * flushes and goes on. */
static void test_early_data(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 10000, first = 100;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst_fd = -1;
    pattern(g_in, n, 8);
    feed_all(&r, g_in, first);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_true(half_pending(&r.h));
    assert_int_equal(buf_len(r.h.buf), first);
    assert_int_equal(r.h.bytes, first);

    feed_all(&r, g_in + first, n - first);
    shut_in(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(r.c.progressed, 0);
        assert_int_equal(inq(r.src), n - first);
        assert_int_equal(buf_len(r.h.buf), first);
    }

    r.c.dst_fd = r.dst;
    assert_int_equal(transfer(&r, g_in, 0, 1, g_out, n), n);
    assert_memory_equal(g_out, g_in, n);
    assert_int_equal(r.h.bytes, n);
    assert_int_equal(r.h.shut, 1);
    rig_free(&r);
}

/* An EOF read while the sink is not connected waits for it too. */
static void test_early_eof(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[16];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst_fd = -1;
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(r.h.shut, 0);
    assert_int_equal(r.bufs.in_use, 0);     /* an EOF holds no buffer */
    r.c.dst_fd = r.dst;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 0);
    rig_free(&r);
}

/* ---- 6. codec path ---- */

/* An encoder (counts_output 0) counts what it reads; a decoder counts
 * what it makes. Both transform every byte, prefix first. */
static void codec_run(const struct codec_ops *ops, uint32_t seed)
{
    struct rig r;
    const size_t n = 200 * KiB + 3;
    codec_frees = 0;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    install(&r, ops, tc_new(0x5a, "PFX"));
    pattern(g_in, n, seed);
    size_t want = expect_xor("PFX", g_in, n, 0x5a);
    assert_int_equal(transfer(&r, g_in, n, 1, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    assert_int_equal(r.h.bytes, ops->counts_output ? want : n);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(r.bufs.in_use, 0);     /* neither raw nor ready buffer kept */
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

static void test_codec_encoder(void **state)
{
    (void)state;
    codec_run(&enc_ops, 9);
}

static void test_codec_decoder(void **state)
{
    (void)state;
    codec_run(&dec_ops, 10);
}

/* A codec that rejects the stream ends the pump with PUMP_CODEC_ERROR;
 * nothing reaches the sink. */
static void test_codec_error(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    codec_frees = 0;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tcodec *t = tc_new(1, NULL);
    t->fail = 1;
    install(&r, &dec_ops, t);
    feed_all(&r, (const uint8_t *)"garbage", 7);
    assert_int_equal(pump(&r), PUMP_CODEC_ERROR);
    assert_int_equal(t->calls, 1);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

/* max_input caps every read (and so every process() call). */
static void test_codec_max_input(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 50000;
    codec_frees = 0;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tcodec *t = tc_new(0x33, NULL);
    t->max_in = 1000;
    install(&r, &lim_ops, t);
    pattern(g_in, n, 11);
    feed_all(&r, g_in, n);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.c.last_ask, 1000);
    size_t want = expect_xor(NULL, g_in, n, 0x33);
    assert_int_equal(transfer(&r, g_in, 0, 0, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    assert_int_equal(t->max_inlen, 1000);
    assert_true(t->calls >= n / 1000);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

/* A codec that takes whole frames only: a partial frame stays in raw and
 * later reads append to it; nothing is lost or reordered. */
static void test_codec_partial_frames(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    codec_frees = 0;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tcodec *t = tc_new(0x77, NULL);
    t->unit = 7;
    install(&r, &dec_ops, t);
    feed_all(&r, (const uint8_t *)"0123456789", 10);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b, sizeof(b)), 7);
    assert_non_null(r.h.raw);
    assert_int_equal(buf_len(r.h.raw), 3);  /* the partial frame waits */
    assert_int_equal(r.h.bytes, 7);
    feed_all(&r, (const uint8_t *)"abcd", 4);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b + 7, sizeof(b) - 7), 7);
    assert_null(r.h.raw);                   /* used up: given back */
    expect_xor(NULL, (const uint8_t *)"0123456789abcd", 14, 0x77);
    assert_memory_equal(b, g_want, 14);
    assert_int_equal(r.h.bytes, 14);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

/* ---- 7. hold: a codec's first output waits for its first input ---- */

/* A rig whose encoder holds "ADDR:" (key 0x20) back for its first input,
 * as ss-local's address header; a SOCK_SEQPACKET sink, so each write is
 * one record. Returns the codec. */
static struct tcodec *hold_rig(struct rig *r)
{
    codec_frees = 0;
    rig_init(r, SINK_SEQPACKET, 4 * KiB);
    struct tcodec *t = tc_new(0x20, "ADDR:");
    install(r, &enc_ops, t);
    r->h.hold = HALF_HOLD_WAIT;
    return t;
}

/* The next record at the sink is prefix (or none) + in[0, n) XOR 0x20. */
static void expect_record(struct rig *r, const char *prefix, const char *in, size_t n)
{
    uint8_t b[256];
    size_t want = expect_xor(prefix, (const uint8_t *)in, n, 0x20);
    assert_int_equal(recv_one(r, b, sizeof(b)), want);
    assert_memory_equal(b, g_want, want);
}

/* No output (and no buffer) until input comes; then prefix and input in
 * one write (one SOCK_SEQPACKET record). */
static void test_hold_until_input(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    struct tcodec *t = hold_rig(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
        assert_int_equal(r.bufs.in_use, 0);
    }
    assert_int_equal(t->calls, 0);
    assert_int_equal(r.h.hold, HALF_HOLD_WAIT);

    feed_all(&r, (const uint8_t *)"hello", 5);
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, "ADDR:", "hello", 5);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    assert_int_equal(r.h.hold, HALF_HOLD_NONE);
    assert_int_equal(t->empty_calls, 0);

    /* Later input goes on its own, without the prefix. */
    feed_all(&r, (const uint8_t *)"again", 5);
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, NULL, "again", 5);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

/* EOF before any input: the prefix goes alone, then the EOF. */
static void test_hold_until_eof(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    struct tcodec *t = hold_rig(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 5);
    assert_memory_equal(b, "ADDR:", 5);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 0);
    assert_int_equal(t->empty_calls, 1);
    assert_int_equal(r.h.shut, 1);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

/* The session gave up waiting (HALF_HOLD_RELEASE): the prefix goes alone
 * at the next pump; input that comes later goes in a write of its own. */
static void test_hold_release(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    struct tcodec *t = hold_rig(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    r.h.hold = HALF_HOLD_RELEASE;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.hold, HALF_HOLD_NONE);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 5);
    assert_memory_equal(b, "ADDR:", 5);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    assert_int_equal(r.bufs.in_use, 0);

    feed_all(&r, (const uint8_t *)"late", 4);
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, NULL, "late", 4);
    assert_int_equal(t->empty_calls, 1);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

/* The shape of the fixed double free (c9fb620): a full buffer of early
 * data, read while the sink was not connected, becomes the codec's input
 * by handing the buffer over (as sess_install_codec() does), behind a held
 * prefix that no longer fits with it in one buffer. Every byte arrives, in
 * order, and the codec state is freed once. */
static void test_hold_full_buffer_handover(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 64 * KiB + 10000;
    codec_frees = 0;
    rig_init(&r, SINK_STREAM, 64 * KiB);
    r.c.dst_fd = -1;
    pattern(g_in, n, 12);
    feed_all(&r, g_in, n);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_non_null(r.h.buf);
    assert_int_equal(buf_len(r.h.buf), 64 * KiB);   /* full */

    struct tcodec *t = tc_new(0x6b, "ADDR:");
    install(&r, &enc_ops, t);
    r.h.raw = r.h.buf;                      /* sess_install_codec(..., 1) */
    r.h.buf = NULL;
    r.h.hold = HALF_HOLD_WAIT;
    r.c.dst_fd = r.dst;

    size_t want = expect_xor("ADDR:", g_in, n, 0x6b);
    assert_int_equal(transfer(&r, g_in, 0, 1, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    assert_int_equal(r.h.bytes, n);
    assert_int_equal(t->empty_calls, 0);    /* the prefix went with input */
    assert_int_equal(r.bufs.in_use, 0);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

/* ---- 8. errors ---- */

/* A sink whose peer is gone: EPIPE (unix) with the bytes still held. */
static void test_dst_closed_unix(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    close(r.out);
    r.out = -1;
    feed_all(&r, (const uint8_t *)"data", 4);
    assert_int_equal(pump(&r), PUMP_DST_ERROR);
    assert_int_equal(r.c.err, EPIPE);
    rig_free(&r);
}

/* A sink reset by its peer (SO_LINGER 0). */
static void test_dst_reset_tcp(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, RIG_TCP, 4 * KiB);
    close_reset(r.out);
    r.out = -1;
    /* The RST is in when the sink polls readable (POLLIN | POLLHUP | POLLERR). */
    assert_true(wait_readable(r.dst, 2000));
    feed_all(&r, (const uint8_t *)"data", 4);
    assert_true(wait_readable(r.src, 2000));
    assert_int_equal(pump(&r), PUMP_DST_ERROR);
    assert_true(r.c.err == ECONNRESET || r.c.err == EPIPE);
    rig_free(&r);
}

/* A source reset by its peer. */
static void test_src_reset_tcp(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, RIG_TCP, 4 * KiB);
    close_reset(r.in);
    r.in = -1;
    assert_true(wait_readable(r.src, 2000));
    assert_int_equal(pump(&r), PUMP_SRC_ERROR);
    assert_int_equal(r.c.err, ECONNRESET);
    rig_free(&r);
}

/* ---- 9. toxics ---- */

static struct toxq *toxq_with(const char *text)
{
    struct toxic_spec spec;
    char err[256] = "";
    if (toxic_spec_parse(text, &spec, err, sizeof(err)) != 0) fail_msg("%s: %s", text, err);
    struct toxic_set *set = toxic_set_new(&spec, 1);
    assert_non_null(set);
    struct toxq *q = malloc(sizeof(*q));
    assert_non_null(q);
    toxq_init(q, 1);
    assert_int_equal(toxq_configure(q, set, TOXIC_DOWNSTREAM, 0), 0);
    toxic_set_unref(set);
    return q;
}

static void toxq_gone(struct toxq *q)
{
    toxq_free(q);
    free(q);
}

/* latency=100 ms: bytes read at t=0 leave at t=100 ms, not a microsecond
 * before; so does the EOF behind them. */
static void test_toxic_latency(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct toxq *q = toxq_with("latency:latency=100");
    r.c.tox = q;
    r.c.now_us = 0;
    feed_all(&r, (const uint8_t *)"delayed", 7);
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);    /* the bytes (a short read ends the call) */
    assert_int_equal(pump(&r), PUMP_OK);    /* the EOF */
    assert_int_equal(r.h.bytes, 7);
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);     /* neither data nor EOF */
    assert_int_equal(toxq_next_wakeup(q), 100000);

    r.c.now_us = 99999;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    assert_int_equal(r.h.shut, 0);

    r.c.now_us = 100000;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b, sizeof(b)), 7);
    assert_memory_equal(b, "delayed", 7);
    assert_int_equal(r.out_eof, 1);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(r.bufs.in_use, 0);
    rig_free(&r);
    toxq_gone(q);
}

/* Toxics that end the session: reset_peer and timeout. */
static void test_toxic_actions(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct toxq *q = toxq_with("reset_peer:timeout=50");
    r.c.tox = q;
    feed_all(&r, (const uint8_t *)"x", 1);
    assert_int_equal(pump(&r), PUMP_OK);
    r.c.now_us = 49999;
    assert_int_equal(pump(&r), PUMP_OK);
    r.c.now_us = 50000;
    assert_int_equal(pump(&r), PUMP_TOXIC_RESET);
    rig_free(&r);
    toxq_gone(q);

    rig_init(&r, SINK_STREAM, 4 * KiB);
    q = toxq_with("timeout:timeout=10");
    r.c.tox = q;
    assert_int_equal(pump(&r), PUMP_OK);
    r.c.now_us = 10000;
    assert_int_equal(pump(&r), PUMP_TOXIC_CLOSE);
    rig_free(&r);
    toxq_gone(q);
}

/* With a decoder, the toxics see the decoded bytes; an encoder encodes
 * what they release. */
static void test_toxic_with_codec(void **state)
{
    (void)state;
    uint8_t b[64];
    const struct codec_ops *ops[] = {&dec_ops, &enc_ops};
    for (size_t i = 0; i < 2; i++) {
        struct rig r;
        codec_frees = 0;
        rig_init(&r, SINK_STREAM, 4 * KiB);
        struct toxq *q = toxq_with("latency:latency=5");
        r.c.tox = q;
        install(&r, ops[i], tc_new(0x11, "P"));
        feed_all(&r, (const uint8_t *)"abc", 3);
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
        r.c.now_us = 5000;
        assert_int_equal(pump(&r), PUMP_OK);
        size_t want = expect_xor("P", (const uint8_t *)"abc", 3, 0x11);
        assert_int_equal(collect(&r, b, sizeof(b)), want);
        assert_memory_equal(b, g_want, want);
        assert_int_equal(r.h.bytes, ops[i]->counts_output ? 4 : 3);
        rig_free(&r);
        assert_int_equal(codec_frees, 1);
        toxq_gone(q);
    }
}

/* Regression: with toxics, a held prefix left alone when the source's EOF
 * was read while its first input still waited in the toxic queue (the hold
 * was released on h->eof although input was coming), so the prefix and the
 * first input left in two writes, the header as a chunk of a telling size.
 * Seen with toxics on an ss-local upload whose client sends and shuts at
 * once. The hold now ends on EOF only once the toxics hold no input. */
static void test_toxic_hold_waits_for_queued_input_at_eof(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    codec_frees = 0;
    rig_init(&r, SINK_SEQPACKET, 4 * KiB);
    struct toxq *q = toxq_with("latency:latency=5");
    r.c.tox = q;
    install(&r, &enc_ops, tc_new(0x20, "ADDR:"));
    r.h.hold = HALF_HOLD_WAIT;
    feed_all(&r, (const uint8_t *)"hello", 5);
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);    /* the bytes, into the queue */
    assert_int_equal(pump(&r), PUMP_OK);    /* the EOF */
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);   /* "ADDR:" still waits for "hello" */
    r.c.now_us = 5000;
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, "ADDR:", "hello", 5);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 0);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
    toxq_gone(q);
}

/* ---- 10. pipe_release ---- */

/* A half holding a ready buffer, codec input and a codec: all given back,
 * the codec state freed once (a second release frees nothing). */
static void test_release(void **state)
{
    (void)state;
    struct rig r;
    codec_frees = 0;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    install(&r, &enc_ops, tc_new(0x01, NULL));
    pattern(g_in, 64 * KiB, 13);
    feed_all(&r, g_in, 64 * KiB);
    assert_int_equal(pump(&r), PUMP_OK);    /* the sink fills */
    assert_true(half_pending(&r.h));
    assert_true(r.bufs.in_use >= 1);
    pipe_release(&r.h, &r.bufs, &r.pipes);
    assert_int_equal(codec_frees, 1);
    assert_int_equal(r.bufs.in_use, 0);
    assert_null(r.h.codec);
    pipe_release(&r.h, &r.bufs, &r.pipes);
    assert_int_equal(codec_frees, 1);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);

    /* raw and buf both held: a codec that makes less than it could. */
    codec_frees = 0;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    struct tcodec *t = tc_new(0x01, NULL);
    t->unit = 3;
    install(&r, &enc_ops, t);
    feed_all(&r, g_in, 64 * KiB);
    for (int i = 0; i < 100 && !(r.h.raw && r.h.buf); i++) assert_int_equal(pump(&r), PUMP_OK);
    assert_non_null(r.h.raw);
    assert_non_null(r.h.buf);
    assert_int_equal(r.bufs.in_use, 2);
    rig_free(&r);
    assert_int_equal(codec_frees, 1);
}

static void test_wants_input(void **state)
{
    (void)state;
    struct half h;
    memset(&h, 0, sizeof(h));
    assert_true(half_wants_input(&h, NULL));
    h.eof = 1;
    assert_false(half_wants_input(&h, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_intact),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_splice_unix),
        cmocka_unit_test(test_splice_small_sink),
        cmocka_unit_test(test_splice_tcp),
        cmocka_unit_test(test_bulk_threshold),
        cmocka_unit_test(test_splice_not_allowed),
        cmocka_unit_test(test_splice_backpressure_release),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_half_close_after_drain),
        cmocka_unit_test(test_half_close_close_follows),
        cmocka_unit_test(test_early_data),
        cmocka_unit_test(test_early_eof),
        cmocka_unit_test(test_codec_encoder),
        cmocka_unit_test(test_codec_decoder),
        cmocka_unit_test(test_codec_error),
        cmocka_unit_test(test_codec_max_input),
        cmocka_unit_test(test_codec_partial_frames),
        cmocka_unit_test(test_hold_until_input),
        cmocka_unit_test(test_hold_until_eof),
        cmocka_unit_test(test_hold_release),
        cmocka_unit_test(test_hold_full_buffer_handover),
        cmocka_unit_test(test_dst_closed_unix),
        cmocka_unit_test(test_dst_reset_tcp),
        cmocka_unit_test(test_src_reset_tcp),
        cmocka_unit_test(test_toxic_latency),
        cmocka_unit_test(test_toxic_actions),
        cmocka_unit_test(test_toxic_with_codec),
        cmocka_unit_test(test_toxic_hold_waits_for_queued_input_at_eof),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_wants_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
