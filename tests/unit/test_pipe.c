/* test_pipe.c - unit tests for relay/pipe: the byte mover without stages
 * (copy, splice, backpressure, half-close, early data, errors, the head
 * link, pipe_release). The stages' side is test_pipe_stages.c; the rig
 * both drive (socket pairs, no loop, no sleeps) is described in pipe_rig.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "pipe_rig.h"

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
    assert_null(pipe_link(&r.h, 0));
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

/* ---- 2. splice path: no stage, two sockets, a bulk direction ---- */

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
 * more, not before; the read after that goes through a kernel pipe. */
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
    assert_int_equal(r.bufs.in_use, 0);
    size_t want = 2 * SPLICE_THRESHOLD - 1 + 100;
    assert_int_equal(collect(&r, g_out, want), want);
    assert_memory_equal(g_out, g_in, 2 * SPLICE_THRESHOLD - 1);
    assert_memory_equal(g_out + 2 * SPLICE_THRESHOLD - 1, g_in, 100);
    assert_int_equal(r.h.bytes, want);
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

/* An endpoint with no socket behind it (a stream in a multiplexer): it
 * reads and writes the rig's sockets but says fd -1, so nothing splices. */
static ssize_t fdless_read(struct endpoint *e, void *p, size_t n) { return recv(*(int *)e->ctx, p, n, 0); }
static ssize_t fdless_write(struct endpoint *e, const void *p, size_t n)
{
    return send(*(int *)e->ctx, p, n, MSG_NOSIGNAL);
}
static void fdless_shutdown(struct endpoint *e) { (void)shutdown(*(int *)e->ctx, SHUT_WR); }
static void fdless_reset(struct endpoint *e) { (void)e; }
static int fdless_fd(const struct endpoint *e)
{
    (void)e;
    return -1;
}
/* The mover never asks for interest or closing: those are the session's. */
static const struct endpoint_ops fdless_ops = {
    .read = fdless_read, .write = fdless_write, .shutdown_write = fdless_shutdown, .reset = fdless_reset,
    .fd = fdless_fd,
};

static void test_splice_needs_two_sockets(void **state)
{
    (void)state;
    const size_t n = 1u << 20;
    pattern(g_in, n, 15);
    for (int side = 0; side < 2; side++) {
        struct rig r;
        rig_init(&r, SINK_STREAM, 64 * KiB);
        r.c.allow_splice = 1;
        struct endpoint *e = side ? &r.dst_ep : &r.src_ep;
        e->ops = &fdless_ops;
        assert_int_equal(transfer(&r, g_in, n, 1, g_out, n), n);
        assert_memory_equal(g_out, g_in, n);
        assert_int_equal(r.h.bulk, 1);
        assert_int_equal(r.pipes.nfree, 0);
        assert_int_equal(r.h.shut, 1);
        rig_free(&r);
    }
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
    assert_null(pipe_link(&r.h, 0));               /* never both */
    assert_int_equal(r.pipes.in_use, 1);
    assert_false(half_wants_input(&r.h));
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
    assert_false(half_wants_input(&r.h));
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
    assert_true(half_wants_input(&r.h));
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
    assert_false(half_wants_input(&r.h));

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
    feed_str(&r, "bye");
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

/* ---- 5. early data: the sink not usable yet ---- */

/* dst NULL: one read into the half, held; no further read however much
 * the source has, even while the buffer has room. With the sink, the pump
 * flushes and goes on. */
static void test_early_data(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 10000, first = 100;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    pattern(g_in, n, 8);
    feed_all(&r, g_in, first);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_true(half_pending(&r.h));
    assert_int_equal(buf_len(pipe_link(&r.h, 0)), first);
    assert_int_equal(r.h.bytes, first);

    feed_all(&r, g_in + first, n - first);
    shut_in(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(r.c.progressed, 0);
        assert_int_equal(inq(r.src), n - first);
        assert_int_equal(buf_len(pipe_link(&r.h, 0)), first);
    }

    r.c.dst = &r.dst_ep;
    assert_int_equal(transfer(&r, g_in, 0, 1, g_out, n), n);
    assert_memory_equal(g_out, g_in, n);
    assert_int_equal(r.h.bytes, n);
    assert_int_equal(r.h.shut, 1);
    rig_free(&r);
}

/* Lead bytes (a PROXY header) go out before early data, even when the early
 * data fills the head link's buffer, and are not application bytes. */
static void test_lead_before_early_data(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 4 * KiB + 1000;
    static const char hdr[] = "PROXY TCP4 127.0.0.2 127.0.0.1 40000 1080\r\n";
    const size_t hl = sizeof(hdr) - 1;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    pattern(g_in, n, 3);
    feed_all(&r, g_in, n);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(buf_len(pipe_link(&r.h, 0)), 4 * KiB);     /* full: no room in front */
    assert_int_equal(pipe_push_lead(&r.h, &r.bufs, hdr, hl), 0);
    assert_true(half_pending(&r.h));
    r.c.dst = &r.dst_ep;
    shut_in(&r);
    assert_int_equal(transfer(&r, g_in, 0, 1, g_out, hl + n), hl + n);
    assert_memory_equal(g_out, hdr, hl);
    assert_memory_equal(g_out + hl, g_in, n);
    assert_int_equal(r.h.bytes, n);
    rig_free(&r);
}

/* An EOF read while the sink is not usable waits for it too. */
static void test_early_eof(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[16];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(r.h.shut, 0);
    assert_int_equal(r.bufs.in_use, 0);     /* an EOF holds no buffer */
    r.c.dst = &r.dst_ep;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 0);
    rig_free(&r);
}

/* No source (src NULL, as while flushing): only what is ready goes out. */
static void test_no_source(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[16];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.src = NULL;
    feed_str(&r, "unread");
    assert_int_equal(pipe_push_ready(&r.h, &r.bufs, "reply", 5), 0);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b, sizeof(b)), 5);
    assert_memory_equal(b, "reply", 5);
    assert_int_equal(inq(r.src), 6);
    assert_int_equal(r.h.bytes, 0);         /* a reply is not application data */
    rig_free(&r);
}

/* ---- 6. the head link: handshake bytes, then early data ---- */

/* pipe_read_head() reads once, uncounted; the front-end consumes its
 * message; pipe_head_is_payload() counts what is left as application
 * bytes, and the pump sends it first. */
static void test_head_then_payload(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    size_t len;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    assert_null(pipe_head(&r.h, &len));
    assert_int_equal(len, 0);
    errno = 0;
    assert_int_equal(pipe_read_head(&r.h, &r.c), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(r.bufs.in_use, 0);     /* nothing read: no buffer kept */

    feed_str(&r, "HELLO\nearly");
    assert_int_equal(pipe_read_head(&r.h, &r.c), 11);
    assert_int_equal(r.c.last_ask, 4 * KiB);
    const uint8_t *p = pipe_head(&r.h, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(p, "HELLO\nearly", 11);
    assert_int_equal(r.h.bytes, 0);
    pipe_head_consumed(&r.h, &r.bufs, 6);
    pipe_head_is_payload(&r.h);
    assert_int_equal(r.h.bytes, 5);

    feed_str(&r, "+more");
    shut_in(&r);
    assert_int_equal(transfer(&r, NULL, 0, 1, b, 10), 10);
    assert_memory_equal(b, "early+more", 10);
    assert_int_equal(r.h.bytes, 10);
    rig_free(&r);

    /* A head consumed whole gives its buffer back. */
    rig_init(&r, SINK_STREAM, 4 * KiB);
    feed_str(&r, "HELLO\n");
    assert_int_equal(pipe_read_head(&r.h, &r.c), 6);
    pipe_head_consumed(&r.h, &r.bufs, 6);
    assert_null(pipe_link(&r.h, 0));
    assert_int_equal(r.bufs.in_use, 0);
    shut_in(&r);
    assert_int_equal(pipe_read_head(&r.h, &r.c), 0);
    rig_free(&r);
}

/* ---- 7. errors ---- */

/* A sink whose peer is gone: EPIPE (unix) with the bytes still held. */
static void test_dst_closed_unix(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    close(r.out);
    r.out = -1;
    feed_str(&r, "data");
    assert_int_equal(pump(&r), PUMP_DST_ERROR);
    assert_int_equal(r.c.err, EPIPE);
    assert_true(half_pending(&r.h));
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
    feed_str(&r, "data");
    assert_true(wait_readable(r.src, 2000));
    assert_int_equal(pump(&r), PUMP_DST_ERROR);
    assert_true(r.c.err == ECONNRESET || r.c.err == EPIPE);
    rig_free(&r);
}

/* A source reset by its peer: PUMP_SRC_ERROR with ECONNRESET, whatever
 * was read before it already forwarded. */
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
    assert_int_equal(r.bufs.in_use, 0);
    rig_free(&r);
}

/* ---- 8. pipe_release ---- */

/* A half holding ready bytes: given back; a second release is harmless. */
static void test_release(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    pattern(g_in, 64 * KiB, 13);
    feed_all(&r, g_in, 64 * KiB);
    assert_int_equal(pump(&r), PUMP_OK);    /* the sink fills */
    assert_true(half_pending(&r.h));
    assert_int_equal(r.bufs.in_use, 1);
    pipe_release(&r.h, &r.bufs, &r.pipes);
    assert_int_equal(r.bufs.in_use, 0);
    assert_false(half_pending(&r.h));
    rig_free(&r);
}

static void test_wants_input(void **state)
{
    (void)state;
    struct half h;
    memset(&h, 0, sizeof(h));
    assert_true(half_wants_input(&h));
    assert_false(half_pending(&h));
    assert_int_equal(pipe_next_wakeup(&h), UINT64_MAX);
    h.eof = 1;
    assert_false(half_wants_input(&h));
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
        cmocka_unit_test(test_splice_needs_two_sockets),
        cmocka_unit_test(test_splice_backpressure_release),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_half_close_after_drain),
        cmocka_unit_test(test_half_close_close_follows),
        cmocka_unit_test(test_early_data),
        cmocka_unit_test(test_lead_before_early_data),
        cmocka_unit_test(test_early_eof),
        cmocka_unit_test(test_no_source),
        cmocka_unit_test(test_head_then_payload),
        cmocka_unit_test(test_dst_closed_unix),
        cmocka_unit_test(test_dst_reset_tcp),
        cmocka_unit_test(test_src_reset_tcp),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_wants_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
