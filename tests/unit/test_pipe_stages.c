/* test_pipe_stages.c - unit tests for relay/pipe: the chain of stages.
 *
 * The rig (pipe_rig.h) runs pipe_pump() over socket pairs with test stages:
 * an XOR stage with knobs (a prefix that waits, framed input, holding,
 * keeping bytes until EOF, a limit that closes, a status to fail with),
 * the toxic queue (toxq_stage_ops) driven by explicit times, and the
 * Shadowsocks encoder and decoder (ss_enc_stage_ops / ss_dec_stage_ops).
 * The toxq and Shadowsocks ops are copied with a counting free so that
 * rig_free() can check every state was freed exactly once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"
#include "relay/ss_codec.h"
#include "stage/toxq_stage.h"

#include "pipe_rig.h"

/* ---- stages from the tree, with a counting free ---- */

static struct stage_ops tox_ops, ss_enc_ops, ss_dec_ops;

static void tox_free_counted(void *s)
{
    g_frees++;
    toxq_stage_ops.free(s);
}

static void ss_enc_free_counted(void *s)
{
    g_frees++;
    ss_enc_stage_ops.free(s);
}

static void ss_dec_free_counted(void *s)
{
    g_frees++;
    ss_dec_stage_ops.free(s);
}

static int setup_ops(void **state)
{
    (void)state;
    tox_ops = toxq_stage_ops;
    tox_ops.free = tox_free_counted;
    ss_enc_ops = ss_enc_stage_ops;
    ss_enc_ops.free = ss_enc_free_counted;
    ss_dec_ops = ss_dec_stage_ops;
    ss_dec_ops.free = ss_dec_free_counted;
    return 0;
}

/* A toxic queue configured with one toxic (CLI form, downstream), added as
 * the rig's toxics stage. */
static struct toxq *add_toxq(struct rig *r, const char *text)
{
    struct toxic_spec spec;
    char err[256] = "";
    if (toxic_spec_parse(text, &spec, err, sizeof(err)) != 0) fail_msg("%s: %s", text, err);
    struct toxic_set *set = toxic_set_new(&spec, 1);
    assert_non_null(set);
    struct toxq *q = toxq_stage_new(1);
    assert_non_null(q);
    assert_int_equal(toxq_configure(q, set, TOXIC_DOWNSTREAM, 0), 0);
    toxic_set_unref(set);
    add_stage(r, &tox_ops, q, 1);
    return q;
}

/* ---- 1. a codec-like stage: every byte transformed, counted at the plaintext link ---- */

/* An encoder (or a filter first) counts what is read; a decoder counts what
 * it makes. Both transform every byte, prefix first, then EOF. */
static void xor_run(uint8_t role, uint32_t seed)
{
    struct rig r;
    const size_t n = 200 * KiB + 3;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    add_ts(&r, role, 0x5a, "PFX");
    pattern(g_in, n, seed);
    size_t want = expect_xor("PFX", g_in, n, 0x5a);
    assert_int_equal(transfer(&r, g_in, n, 1, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    assert_int_equal(r.h.bytes, role == STAGE_DECODER ? want : n);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(pipe_stage_at(&r.h, 0)->done, 1);
    assert_int_equal(r.bufs.in_use, 0);     /* no link keeps a buffer */
    rig_free(&r);
}

static void test_stage_encoder(void **state)
{
    (void)state;
    xor_run(STAGE_ENCODER, 9);
}

static void test_stage_decoder(void **state)
{
    (void)state;
    xor_run(STAGE_DECODER, 10);
}

static void test_stage_filter(void **state)
{
    (void)state;
    xor_run(STAGE_FILTER, 16);
}

/* A stage that takes whole frames only: a partial frame stays in the head
 * link and later reads append to it; nothing is lost or reordered. */
static void test_stage_partial_frames(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tstage *t = add_ts(&r, STAGE_DECODER, 0x77, NULL);
    t->unit = 7;
    feed_str(&r, "0123456789");
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b, sizeof(b)), 7);
    assert_non_null(pipe_link(&r.h, 0));
    assert_int_equal(buf_len(pipe_link(&r.h, 0)), 3);   /* the partial frame waits */
    assert_int_equal(r.h.bytes, 7);
    feed_str(&r, "abcd");
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b + 7, sizeof(b) - 7), 7);
    assert_null(pipe_link(&r.h, 0));               /* used up: given back */
    expect_xor(NULL, (const uint8_t *)"0123456789abcd", 14, 0x77);
    assert_memory_equal(b, g_want, 14);
    assert_int_equal(r.h.bytes, 14);
    rig_free(&r);
}

/* ---- 2. max_input ---- */

/* A read is no larger than what stage 0 takes in one pass. */
static void test_max_input_read(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 50000;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tstage *t = add_ts(&r, STAGE_ENCODER, 0x33, NULL);
    t->max_in = 1000;
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
}

/* Also while stage 0 cannot run (the stage after it holds its output): the
 * head link is filled up to one pass of stage 0 and no further, so no pass
 * is left a short tail (a tiny chunk and an extra write). */
static void test_max_input_read_while_blocked(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 50000;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tstage *first = add_ts(&r, STAGE_FILTER, 0x33, NULL);
    struct tstage *last = add_ts(&r, STAGE_ENCODER, 0x44, NULL);
    first->max_in = 1000;
    last->hold = 1;
    pattern(g_in, n, 17);
    feed_all(&r, g_in, n);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_true(r.c.last_ask <= 1000);
        assert_true(buf_len(pipe_link(&r.h, 0)) <= 1000);
    }
    assert_int_equal(inq(r.src), n - 2000);  /* one pass made, one waiting */
    assert_false(half_wants_input(&r.h));
    last->hold = 0;
    size_t want = expect_xor(NULL, g_in, n, 0x33 ^ 0x44);
    assert_int_equal(transfer(&r, g_in, 0, 0, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    assert_int_equal(first->max_inlen, 1000);
    assert_int_equal(last->max_inlen, 1000);
    rig_free(&r);
}

/* A stage makes no more than the next stage takes in one pass. */
static void test_max_input_between_stages(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 50000;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tstage *dec = add_ts(&r, STAGE_DECODER, 0x01, NULL);
    struct tstage *enc = add_ts(&r, STAGE_ENCODER, 0x02, NULL);
    enc->max_in = 700;
    pattern(g_in, n, 18);
    size_t want = expect_xor(NULL, g_in, n, 0x03);
    assert_int_equal(transfer(&r, g_in, n, 1, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    assert_int_equal(dec->max_made, 700);
    assert_int_equal(enc->max_inlen, 700);
    assert_true(dec->max_inlen > 700);      /* the read itself is not capped */
    assert_int_equal(r.h.bytes, n);
    rig_free(&r);
}

/* ---- 3. a holding stage: backpressure and bounded memory ---- */

/* Stage 0 leaves its input unused: the source is read only until the head
 * link is full, then no more however long it holds; memory stays at one
 * buffer. Once it lets go, everything arrives. */
static void test_hold_stops_source(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 64 * KiB;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tstage *t = add_ts(&r, STAGE_FILTER, 0x21, NULL);
    t->hold = 1;
    pattern(g_in, n, 19);
    feed_all(&r, g_in, n);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(inq(r.src), n - 4 * KiB);
    assert_int_equal(buf_len(pipe_link(&r.h, 0)), 4 * KiB);
    assert_false(half_wants_input(&r.h));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(r.c.progressed, 0);
        assert_int_equal(inq(r.src), n - 4 * KiB);
        assert_int_equal(r.bufs.in_use, 1);
    }
    t->hold = 0;
    size_t want = expect_xor(NULL, g_in, n, 0x21);
    assert_int_equal(transfer(&r, g_in, 0, 1, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    rig_free(&r);
}

/* The second stage holds: the first fills its output once, the head link
 * fills, and that is all (two buffers). */
static void test_hold_second_stage_bounded(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 64 * KiB;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tstage *first = add_ts(&r, STAGE_DECODER, 0x10, NULL);
    struct tstage *second = add_ts(&r, STAGE_ENCODER, 0x20, NULL);
    second->hold = 1;
    pattern(g_in, n, 20);
    feed_all(&r, g_in, n);
    for (int i = 0; i < 4; i++) assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.c.progressed, 0);
    assert_int_equal(r.bufs.in_use, 2);
    assert_int_equal(inq(r.src), n - 8 * KiB);
    assert_int_equal(r.h.bytes, 4 * KiB);   /* the decoder's one pass */
    assert_int_equal(first->max_made, 4 * KiB);
    second->hold = 0;
    size_t want = expect_xor(NULL, g_in, n, 0x30);
    assert_int_equal(transfer(&r, g_in, 0, 1, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    rig_free(&r);
}

/* A sink that takes no more stops the chain and the source: nothing is
 * read, no stage runs into a busy output, memory stays bounded. */
static void test_stage_backpressure(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 128 * KiB;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    set_int_opt(r.out, SOL_SOCKET, SO_RCVBUF, 4 * KiB);
    struct tstage *dec = add_ts(&r, STAGE_DECODER, 0x0f, NULL);
    add_ts(&r, STAGE_ENCODER, 0xf0, NULL);
    pattern(g_in, n, 21);
    feed_all(&r, g_in, n);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_true(half_pending(&r.h));
    size_t waiting = inq(r.src), calls = dec->calls;
    assert_true(waiting > 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(r.c.progressed, 0);
        assert_int_equal(inq(r.src), waiting);
        assert_int_equal(dec->calls, calls);
        assert_true(r.bufs.in_use <= 3);
    }
    size_t want = expect_xor(NULL, g_in, n, 0xff);
    assert_int_equal(transfer(&r, g_in, 0, 0, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    rig_free(&r);
}

/* ---- 4. a prefix that waits (next_wakeup, now_us), as ss-local's header ---- */

/* A rig whose encoder holds "ADDR:" (key 0x20) back for its first input
 * until t = 10 ms; a SOCK_SEQPACKET sink, so each write is one record. */
static struct tstage *wait_rig(struct rig *r)
{
    rig_init(r, SINK_SEQPACKET, 4 * KiB);
    struct tstage *t = add_ts(r, STAGE_ENCODER, 0x20, "ADDR:");
    t->wait_until_us = 10000;
    return t;
}

/* No output (and no buffer) until input comes; then prefix and input in
 * one write (one SOCK_SEQPACKET record); later input goes alone. */
static void test_wait_until_input(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    struct tstage *t = wait_rig(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
        assert_int_equal(r.bufs.in_use, 0);
        assert_int_equal(pipe_next_wakeup(&r.h), 10000);
    }
    assert_int_equal(t->max_made, 0);
    assert_int_equal(t->in_calls, 0);

    r.c.now_us = 5000;
    feed_str(&r, "hello");
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, "ADDR:", "hello", 0x20);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    assert_int_equal(pipe_next_wakeup(&r.h), UINT64_MAX);
    assert_int_equal(t->prefix_alone, 0);

    feed_str(&r, "again");
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, NULL, "again", 0x20);
    rig_free(&r);
}

/* EOF before any input: the prefix goes alone, then the EOF. */
static void test_wait_until_eof(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    struct tstage *t = wait_rig(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record_bytes(&r, (const uint8_t *)"ADDR:", 5);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 0);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(t->prefix_alone, 1);
    rig_free(&r);
}

/* The wait ends at its time, not a microsecond before: the prefix goes
 * alone; input that comes later goes in a write of its own. */
static void test_wait_deadline(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    struct tstage *t = wait_rig(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    r.c.now_us = 9999;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    r.c.now_us = 10000;
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record_bytes(&r, (const uint8_t *)"ADDR:", 5);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    assert_int_equal(pipe_next_wakeup(&r.h), UINT64_MAX);
    assert_int_equal(r.bufs.in_use, 0);

    feed_str(&r, "late");
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, NULL, "late", 0x20);
    assert_int_equal(t->prefix_alone, 1);
    rig_free(&r);
}

/* A full buffer of early data, read while the sink was not usable, becomes
 * the stage's input (pending_is_input), behind a waiting prefix that no
 * longer fits with it in one buffer. Every byte arrives, in order (the
 * shape of the double free fixed in c9fb620). */
static void test_wait_full_buffer_handover(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 64 * KiB + 10000;
    rig_init(&r, SINK_STREAM, 64 * KiB);
    r.c.dst = NULL;
    pattern(g_in, n, 12);
    feed_all(&r, g_in, n);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_non_null(pipe_link(&r.h, 0));
    assert_int_equal(buf_len(pipe_link(&r.h, 0)), 64 * KiB);   /* full */

    struct tstage *t = add_ts(&r, STAGE_ENCODER, 0x6b, "ADDR:");
    t->wait_until_us = 10000;
    r.c.dst = &r.dst_ep;
    size_t want = expect_xor("ADDR:", g_in, n, 0x6b);
    assert_int_equal(transfer(&r, g_in, 0, 1, g_out, want), want);
    assert_memory_equal(g_out, g_want, want);
    assert_int_equal(r.h.bytes, n);
    assert_int_equal(t->prefix_alone, 0);   /* the prefix went with input */
    assert_int_equal(r.bufs.in_use, 0);
    rig_free(&r);
}

/* ---- 5. half-close through the chain ---- */

/* The EOF reaches the sink only once the chain is drained: a stage that
 * keeps bytes until its input ends lets them all out first (in several
 * passes when they exceed one output), then the FIN. */
static void test_eof_after_kept_bytes(void **state)
{
    (void)state;
    struct rig r;
    const size_t n = 1000;
    rig_init(&r, SINK_STREAM, 256);
    struct tstage *t = add_ts(&r, STAGE_FILTER, 0x42, NULL);
    t->keep = 1;
    pattern(g_in, n, 22);
    feed_all(&r, g_in, n);
    for (int i = 0; i < 10; i++) assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, g_out, n), 0);
    assert_int_equal(t->nkept, n);
    assert_int_equal(r.bufs.in_use, 0);
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(collect(&r, g_out, n), n);
    assert_int_equal(r.out_eof, 1);         /* behind every byte */
    expect_xor(NULL, g_in, n, 0x42);
    assert_memory_equal(g_out, g_want, n);
    assert_true(t->max_made <= 256);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(pipe_stage_at(&r.h, 0)->done, 1);
    rig_free(&r);
}

/* With the sink full at EOF, neither the last bytes nor the FIN go until
 * it drains; then both, in that order, and once. */
static void test_eof_waits_for_sink(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    add_ts(&r, STAGE_DECODER, 0x01, NULL);
    add_ts(&r, STAGE_ENCODER, 0x02, NULL);
    size_t junk = fill_sink(&r);
    feed_str(&r, "tail");
    shut_in(&r);
    for (int i = 0; i < 3; i++) assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.h.shut, 0);
    assert_true(half_pending(&r.h));
    drop_out(&r, junk);
    for (int i = 0; i < 3; i++) assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b, sizeof(b)), 4);
    expect_xor(NULL, (const uint8_t *)"tail", 4, 0x03);
    assert_memory_equal(b, g_want, 4);
    assert_int_equal(r.out_eof, 1);
    assert_int_equal(r.h.shut, 1);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(r.c.progressed, 0);
    rig_free(&r);
}

/* ---- 6. stages that end the session ---- */

/* STAGE_CLOSE: what the stage made with it reaches the sink (and passes the
 * stages after it) before the pump reports the close; the closing stage is
 * not run again, nor is the source read. */
static void test_stage_close_delivers(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    struct tstage *lim = add_ts(&r, STAGE_FILTER, 0x00, NULL);
    add_ts(&r, STAGE_ENCODER, 0x01, NULL);
    lim->limit = 5;
    size_t junk = fill_sink(&r);
    feed_str(&r, "hello world");
    assert_int_equal(pump(&r), PUMP_OK);    /* made, not delivered */
    assert_int_equal(pipe_closing(&r.h), 1);
    size_t calls = lim->calls;
    assert_int_equal(pump(&r), PUMP_OK);
    drop_out(&r, junk);
    assert_int_equal(pump(&r), PUMP_STAGE_CLOSE);
    assert_int_equal(r.c.stage_role, STAGE_FILTER);
    assert_int_equal(lim->calls, calls);
    assert_int_equal(collect(&r, b, sizeof(b)), 5);
    expect_xor(NULL, (const uint8_t *)"hello", 5, 0x01);
    assert_memory_equal(b, g_want, 5);
    assert_int_equal(r.out_eof, 0);         /* a close, not an EOF */
    assert_int_equal(pump(&r), PUMP_STAGE_CLOSE);   /* and it stays so */
    assert_int_equal(pipe_next_wakeup(&r.h), UINT64_MAX);
    rig_free(&r);
}

/* STAGE_RESET and STAGE_ERROR end the pump at once, with the role of the
 * stage that asked; nothing reaches the sink. STAGE_NOMEM is PUMP_NOMEM. */
static void test_stage_reset_error_nomem(void **state)
{
    (void)state;
    static const struct {
        enum stage_status st;
        uint8_t role;
        enum pump_result want;
    } cases[] = {
        {STAGE_RESET, STAGE_FILTER, PUMP_STAGE_RESET},
        {STAGE_ERROR, STAGE_DECODER, PUMP_STAGE_ERROR},
        {STAGE_ERROR, STAGE_ENCODER, PUMP_STAGE_ERROR},
        {STAGE_NOMEM, STAGE_FILTER, PUMP_NOMEM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rig r;
        uint8_t b[64];
        rig_init(&r, SINK_STREAM, 4 * KiB);
        /* A pass-through stage on the other side of the failing one. */
        add_ts(&r, cases[i].role == STAGE_DECODER ? STAGE_ENCODER : STAGE_DECODER, 0x01, NULL);
        struct tstage *t = add_ts(&r, cases[i].role, 0x02, NULL);
        t->fail = cases[i].st;
        feed_str(&r, "garbage");
        assert_int_equal(pump(&r), cases[i].want);
        assert_int_equal(r.c.stage_role, cases[i].role);
        assert_int_equal(t->in_calls, 1);
        assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
        rig_free(&r);
    }
}

/* ---- 7. building the chain ---- */

/* Stages sit by role whatever the order they come in (filters in arrival
 * order); a full chain refuses and frees the state; bytes pass every stage. */
static void test_add_stage_order(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct tstage *enc = add_ts(&r, STAGE_ENCODER, 0x01, NULL);
    struct tstage *tox = add_ts(&r, STAGE_TOXICS, 0x02, NULL);
    struct tstage *fa = add_ts(&r, STAGE_FILTER, 0x04, NULL);
    struct tstage *dec = add_ts(&r, STAGE_DECODER, 0x08, NULL);
    struct tstage *fb = add_ts(&r, STAGE_FILTER, 0x10, NULL);
    struct tstage *fc = add_ts(&r, STAGE_FILTER, 0x20, NULL);
    void *order[] = {dec, fa, fb, fc, tox, enc};
    assert_int_equal(pipe_nstages(&r.h), PIPE_MAX_STAGES);
    for (size_t i = 0; i < PIPE_MAX_STAGES; i++) assert_ptr_equal(pipe_stage_at(&r.h, i)->state, order[i]);
    assert_int_equal(pipe_stage_at(&r.h, 0)->ops->role, STAGE_DECODER);
    assert_int_equal(pipe_stage_at(&r.h, 5)->ops->role, STAGE_ENCODER);
    assert_ptr_equal(pipe_stage_state(&r.h, &ts_ops[STAGE_ENCODER]), enc);
    assert_ptr_equal(pipe_stage_state(&r.h, &ts_ops[STAGE_FILTER]), fa);
    assert_null(pipe_stage_state(&r.h, &toxq_stage_ops));

    struct tstage *extra = ts_new(0x40, NULL);
    assert_int_equal(pipe_add_stage(&r.h, &ts_ops[STAGE_FILTER], extra, 1), -1);
    assert_int_equal(g_frees, 1);           /* refused: freed */
    g_made++;
    assert_int_equal(pipe_nstages(&r.h), PIPE_MAX_STAGES);

    feed_str(&r, "chain");
    shut_in(&r);
    assert_int_equal(transfer(&r, NULL, 0, 1, b, 5), 5);
    expect_xor(NULL, (const uint8_t *)"chain", 5, 0x3f);
    assert_memory_equal(b, g_want, 5);
    for (size_t i = 0; i < PIPE_MAX_STAGES; i++) assert_int_equal(pipe_stage_at(&r.h, i)->done, 1);
    rig_free(&r);
}

/* pending_is_input 1: bytes already waiting where the stage goes in become
 * its input (early data behind ss-local's header). */
static void test_add_stage_pending_is_input(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    feed_str(&r, "early");
    assert_int_equal(pump(&r), PUMP_OK);
    add_ts(&r, STAGE_ENCODER, 0x11, "H:");
    r.c.dst = &r.dst_ep;
    feed_str(&r, "+late");
    assert_int_equal(transfer(&r, NULL, 0, 0, b, 12), 12);
    expect_xor("H:", (const uint8_t *)"early+late", 10, 0x11);
    assert_memory_equal(b, g_want, 12);
    assert_int_equal(r.h.bytes, 10);
    rig_free(&r);

    /* Behind an existing stage: what it made becomes the new stage's input. */
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    add_ts(&r, STAGE_DECODER, 0x01, NULL);
    feed_str(&r, "abc");
    assert_int_equal(pump(&r), PUMP_OK);
    assert_true(half_pending(&r.h));
    add_ts(&r, STAGE_ENCODER, 0x02, NULL);
    assert_false(half_pending(&r.h));
    r.c.dst = &r.dst_ep;
    assert_int_equal(transfer(&r, NULL, 0, 0, b, 3), 3);
    expect_xor(NULL, (const uint8_t *)"abc", 3, 0x03);
    assert_memory_equal(b, g_want, 3);
    rig_free(&r);
}

/* pending_is_input 0: bytes already waiting are the stage's output, ready
 * (a reply queued before a decoder is installed is not decoded). */
static void test_add_stage_pending_is_output(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    assert_int_equal(pipe_push_ready(&r.h, &r.bufs, "REPLY", 5), 0);
    struct tstage *t = ts_new(0x11, NULL);
    add_stage(&r, &ts_ops[STAGE_DECODER], t, 0);
    assert_true(half_pending(&r.h));
    r.c.dst = &r.dst_ep;
    feed_str(&r, "data");
    assert_int_equal(transfer(&r, NULL, 0, 0, b, 9), 9);
    assert_memory_equal(b, "REPLY", 5);
    expect_xor(NULL, (const uint8_t *)"data", 4, 0x11);
    assert_memory_equal(b + 5, g_want, 4);
    assert_int_equal(r.h.bytes, 4);         /* the decoder's output only */
    rig_free(&r);

    /* Behind an existing stage: what it made stays ready. */
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    add_ts(&r, STAGE_DECODER, 0x01, NULL);
    feed_str(&r, "abc");
    assert_int_equal(pump(&r), PUMP_OK);
    add_stage(&r, &ts_ops[STAGE_ENCODER], ts_new(0x02, NULL), 0);
    assert_true(half_pending(&r.h));
    r.c.dst = &r.dst_ep;
    feed_str(&r, "def");
    assert_int_equal(transfer(&r, NULL, 0, 0, b, 6), 6);
    expect_xor(NULL, (const uint8_t *)"abc", 3, 0x01);
    assert_memory_equal(b, g_want, 3);
    expect_xor(NULL, (const uint8_t *)"def", 3, 0x03);
    assert_memory_equal(b + 3, g_want, 3);
    rig_free(&r);
}

/* The earliest wakeup of the chain's stages. */
static void test_next_wakeup(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    assert_int_equal(pipe_next_wakeup(&r.h), UINT64_MAX);
    struct tstage *a = add_ts(&r, STAGE_FILTER, 0, "a");
    struct tstage *b = add_ts(&r, STAGE_ENCODER, 0, "b");
    a->wait_until_us = 7000;
    b->wait_until_us = 5000;
    assert_int_equal(pipe_next_wakeup(&r.h), 5000);
    b->wait_until_us = 9000;
    assert_int_equal(pipe_next_wakeup(&r.h), 7000);
    /* A stage whose output waits for the next link is not woken: only the
     * stage that can run counts. */
    assert_int_equal(pipe_push_ready(&r.h, &r.bufs, "x", 1), 0);
    assert_int_equal(pipe_next_wakeup(&r.h), 7000);      /* b's output busy: b skipped */
    a->wait_until_us = UINT64_MAX;
    assert_int_equal(pipe_next_wakeup(&r.h), UINT64_MAX);
    rig_free(&r);
}

/* pipe_keep_ready_only: the stages are freed (once) and every byte not yet
 * ready is dropped; what was ready goes out, and nothing else. */
static void test_keep_ready_only(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    r.c.dst = NULL;
    add_ts(&r, STAGE_FILTER, 0x01, NULL);
    struct tstage *enc = add_ts(&r, STAGE_ENCODER, 0x02, NULL);
    enc->hold = 1;
    feed_str(&r, "abc");
    assert_int_equal(pump(&r), PUMP_OK);
    feed_str(&r, "def");
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(pipe_push_ready(&r.h, &r.bufs, "READY", 5), 0);
    assert_int_equal(buf_len(pipe_link(&r.h, 0)), 3);
    assert_int_equal(buf_len(pipe_link(&r.h, 1)), 3);
    assert_int_equal(r.bufs.in_use, 3);

    pipe_keep_ready_only(&r.h, &r.bufs, &r.pipes);
    assert_int_equal(g_frees, 2);
    assert_int_equal(pipe_nstages(&r.h), 0);
    assert_int_equal(r.bufs.in_use, 1);
    assert_true(half_pending(&r.h));
    r.c.src = NULL;
    r.c.dst = &r.dst_ep;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(collect(&r, b, sizeof(b)), 5);
    assert_memory_equal(b, "READY", 5);
    assert_int_equal(r.bufs.in_use, 0);
    rig_free(&r);
}

/* A half whose chain holds bytes in every link: all given back, each state
 * freed once. */
static void test_release_with_stages(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    set_int_opt(r.dst, SOL_SOCKET, SO_SNDBUF, 4 * KiB);
    struct tstage *t = add_ts(&r, STAGE_ENCODER, 0x01, NULL);
    t->unit = 3;
    pattern(g_in, 64 * KiB, 13);
    feed_all(&r, g_in, 64 * KiB);
    for (int i = 0; i < 100 && !(pipe_link(&r.h, 0) && pipe_link(&r.h, 1)); i++) assert_int_equal(pump(&r), PUMP_OK);
    assert_non_null(pipe_link(&r.h, 0));
    assert_non_null(pipe_link(&r.h, 1));
    assert_int_equal(r.bufs.in_use, 2);
    rig_free(&r);
}

/* ---- 8. toxics: the toxic queue as a stage, explicit times ---- */

/* latency=100 ms: bytes read at t=0 leave at t=100 ms, not a microsecond
 * before; so does the EOF behind them. */
static void test_toxic_latency(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    add_toxq(&r, "latency:latency=100");
    feed_str(&r, "delayed");
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);    /* the bytes (a short read ends the call) */
    assert_int_equal(pump(&r), PUMP_OK);    /* the EOF */
    assert_int_equal(r.h.bytes, 7);
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);     /* neither data nor EOF */
    assert_int_equal(pipe_next_wakeup(&r.h), 100000);
    assert_int_equal(r.bufs.in_use, 0);     /* the queue holds them, not a link */

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
}

/* Each piece leaves at its own due time and in its own write: a slicer
 * cuts 400 bytes into four 100-byte pieces 1 ms apart. */
static void test_toxic_pieces(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    rig_init(&r, SINK_SEQPACKET, 4 * KiB);
    add_toxq(&r, "slicer:average_size=100,size_variation=0,delay=1000");
    pattern(g_in, 400, 23);
    feed_all(&r, g_in, 400);
    assert_int_equal(pump(&r), PUMP_OK);    /* t=0: the first piece */
    expect_record_bytes(&r, g_in, 100);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    assert_int_equal(pipe_next_wakeup(&r.h), 1000);
    r.c.now_us = 999;
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    r.c.now_us = 1000;
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record_bytes(&r, g_in + 100, 100);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    /* Late: both due pieces go, still one write each. */
    r.c.now_us = 3000;
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record_bytes(&r, g_in + 200, 100);
    expect_record_bytes(&r, g_in + 300, 100);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    assert_int_equal(pipe_next_wakeup(&r.h), UINT64_MAX);
    rig_free(&r);
}

/* Toxics that end the session: reset_peer, timeout, and limit_data (which
 * delivers exactly its bytes before the close). */
static void test_toxic_actions(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[64];
    rig_init(&r, SINK_STREAM, 4 * KiB);
    add_toxq(&r, "reset_peer:timeout=50");
    feed_str(&r, "x");
    assert_int_equal(pump(&r), PUMP_OK);
    r.c.now_us = 49999;
    assert_int_equal(pump(&r), PUMP_OK);
    r.c.now_us = 50000;
    assert_int_equal(pump(&r), PUMP_STAGE_RESET);
    assert_int_equal(r.c.stage_role, STAGE_TOXICS);
    rig_free(&r);

    rig_init(&r, SINK_STREAM, 4 * KiB);
    add_toxq(&r, "timeout:timeout=10");
    assert_int_equal(pump(&r), PUMP_OK);
    r.c.now_us = 10000;
    assert_int_equal(pump(&r), PUMP_STAGE_CLOSE);
    assert_int_equal(r.c.stage_role, STAGE_TOXICS);
    rig_free(&r);

    rig_init(&r, SINK_STREAM, 4 * KiB);
    add_toxq(&r, "limit_data:bytes=5");
    feed_str(&r, "hello world");
    enum pump_result pr = pump(&r);
    for (int i = 0; i < 3 && pr == PUMP_OK; i++) pr = pump(&r);
    assert_int_equal(pr, PUMP_STAGE_CLOSE);
    assert_int_equal(r.c.stage_role, STAGE_TOXICS);
    assert_int_equal(collect(&r, b, sizeof(b)), 5);
    assert_memory_equal(b, "hello", 5);
    rig_free(&r);
}

/* With a decoder, the toxics see (and the count is of) the decoded bytes;
 * an encoder encodes what they release. */
static void test_toxic_with_codec(void **state)
{
    (void)state;
    uint8_t b[64];
    const uint8_t roles[] = {STAGE_DECODER, STAGE_ENCODER};
    for (size_t i = 0; i < 2; i++) {
        struct rig r;
        rig_init(&r, SINK_STREAM, 4 * KiB);
        add_toxq(&r, "latency:latency=5");
        add_ts(&r, roles[i], 0x11, "P");
        assert_int_equal(pipe_stage_at(&r.h, roles[i] == STAGE_DECODER ? 0 : 1)->ops->role, roles[i]);
        feed_str(&r, "abc");
        assert_int_equal(pump(&r), PUMP_OK);
        assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
        r.c.now_us = 5000;
        assert_int_equal(pump(&r), PUMP_OK);
        size_t want = expect_xor("P", (const uint8_t *)"abc", 3, 0x11);
        assert_int_equal(collect(&r, b, sizeof(b)), want);
        assert_memory_equal(b, g_want, want);
        assert_int_equal(r.h.bytes, roles[i] == STAGE_DECODER ? 4 : 3);
        rig_free(&r);
    }
}

/* Regression (9f79ccb): with toxics, a waiting prefix must not leave alone
 * when the source's EOF was read while its first input still waited in the
 * toxic queue: the encoder's input has not ended until the queue let its
 * EOF through. Prefix and first input leave in one write, then the EOF. */
static void test_toxic_prefix_waits_for_queued_input_at_eof(void **state)
{
    (void)state;
    struct rig r;
    uint8_t b[256];
    rig_init(&r, SINK_SEQPACKET, 4 * KiB);
    add_toxq(&r, "latency:latency=5");
    struct tstage *t = add_ts(&r, STAGE_ENCODER, 0x20, "ADDR:");
    t->wait_until_us = 1000000;
    feed_str(&r, "hello");
    shut_in(&r);
    assert_int_equal(pump(&r), PUMP_OK);    /* the bytes, into the queue */
    assert_int_equal(pump(&r), PUMP_OK);    /* the EOF */
    assert_int_equal(r.h.eof, 1);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);   /* "ADDR:" still waits for "hello" */
    assert_int_equal(pipe_next_wakeup(&r.h), 5000);
    r.c.now_us = 5000;
    assert_int_equal(pump(&r), PUMP_OK);
    expect_record(&r, "ADDR:", "hello", 0x20);
    assert_int_equal(recv_one(&r, b, sizeof(b)), 0);
    rig_free(&r);
}

/* ---- 9. Shadowsocks: the AEAD encoder and decoder stages ---- */

static void ss_cfg(struct listener_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->ss_method, sizeof(cfg->ss_method), "%s", "aes-128-gcm");
    for (size_t i = 0; i < sizeof(cfg->ss_key); i++) cfg->ss_key[i] = (uint8_t)(i * 37 + 1);
}

static uint8_t g_mid[1u << 20];
static size_t g_rec[4096];

/* Encodes g_in[0, n) behind prefix through an encoder stage into g_mid, one
 * SOCK_SEQPACKET record per write (lengths in g_rec); returns the bytes.
 * As in ss-local, the first `early` bytes are read before the encoder comes
 * and are its first input (an encoder made here has no first-data wait:
 * that is ss_tunnel_attach's, so without input it sends the prefix alone). */
static size_t ss_encode(const struct listener_cfg *cfg, size_t n, size_t early, const char *prefix, size_t *nrec)
{
    struct rig r;
    rig_init(&r, SINK_SEQPACKET, 4 * KiB);
    r.c.dst = NULL;
    feed_all(&r, g_in, early);
    assert_int_equal(pump(&r), PUMP_OK);
    assert_int_equal(buf_len(pipe_link(&r.h, 0)), early);
    struct ss_enc_codec *e = ss_codec_new_encoder(cfg, NULL, (const uint8_t *)prefix, strlen(prefix));
    assert_non_null(e);
    add_stage(&r, &ss_enc_ops, e, 1);
    r.c.dst = &r.dst_ep;
    feed_all(&r, g_in + early, n - early);
    shut_in(&r);
    size_t got = 0;
    *nrec = 0;
    for (int round = 0; round < 1000 && !r.out_eof; round++) {
        assert_int_equal(pump(&r), PUMP_OK);
        ssize_t k;
        while ((k = recv_one(&r, g_mid + got, sizeof(g_mid) - got)) > 0) {
            assert_true(*nrec < sizeof(g_rec) / sizeof(g_rec[0]));
            g_rec[(*nrec)++] = (size_t)k;
            got += (size_t)k;
        }
        if (k == 0) r.out_eof = 1;
    }
    assert_int_equal(r.out_eof, 1);
    assert_int_equal(r.h.bytes, n);         /* an encoder counts what it reads */
    rig_free(&r);
    return got;
}

/* Plaintext through the encoder, ciphertext through the decoder: the same
 * bytes come out, prefix first. The prefix leaves with the early data, in
 * one chunk of its own size (salt, length, tags: 16 + 2 + 16 + 16); then
 * every read is one whole chunk: each write but the last fills the buffer
 * exactly (max_input), no tiny tail chunks. */
static void test_ss_round_trip(void **state)
{
    (void)state;
    struct listener_cfg cfg;
    const size_t n = 50000;
    size_t nrec;
    ss_cfg(&cfg);
    pattern(g_in, n, 24);
    size_t len = ss_encode(&cfg, n, 1000, "ADDR", &nrec);
    assert_true(nrec >= n / (4 * KiB));
    assert_int_equal(g_rec[0], 16 + 2 + 16 + 4 + 1000 + 16);
    for (size_t i = 1; i + 1 < nrec; i++) assert_int_equal(g_rec[i], 4 * KiB);

    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    struct ss_dec_codec *d = ss_codec_new_decoder(&cfg, NULL);
    assert_non_null(d);
    add_stage(&r, &ss_dec_ops, d, 1);
    assert_int_equal(transfer(&r, g_mid, len, 1, g_out, 4 + n), 4 + n);
    assert_memory_equal(g_out, "ADDR", 4);
    assert_memory_equal(g_out + 4, g_in, n);
    assert_int_equal(r.h.bytes, 4 + n);     /* a decoder counts what it makes */
    assert_int_equal(r.h.shut, 1);
    rig_free(&r);
}

/* A flipped ciphertext byte: PUMP_STAGE_ERROR from the decoder, and not a
 * byte of plaintext reaches the sink. */
static void test_ss_corrupt(void **state)
{
    (void)state;
    struct listener_cfg cfg;
    const size_t n = 3000;
    size_t nrec;
    uint8_t b[64];
    ss_cfg(&cfg);
    pattern(g_in, n, 25);
    size_t len = ss_encode(&cfg, n, 100, "", &nrec);
    g_mid[len / 2] ^= 0x01;

    struct rig r;
    rig_init(&r, SINK_STREAM, 4 * KiB);
    add_stage(&r, &ss_dec_ops, ss_codec_new_decoder(&cfg, NULL), 1);
    feed_all(&r, g_mid, len);
    assert_int_equal(pump(&r), PUMP_STAGE_ERROR);
    assert_int_equal(r.c.stage_role, STAGE_DECODER);
    assert_int_equal(recv_one(&r, b, sizeof(b)), -1);
    rig_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage_encoder),
        cmocka_unit_test(test_stage_decoder),
        cmocka_unit_test(test_stage_filter),
        cmocka_unit_test(test_stage_partial_frames),
        cmocka_unit_test(test_max_input_read),
        cmocka_unit_test(test_max_input_read_while_blocked),
        cmocka_unit_test(test_max_input_between_stages),
        cmocka_unit_test(test_hold_stops_source),
        cmocka_unit_test(test_hold_second_stage_bounded),
        cmocka_unit_test(test_stage_backpressure),
        cmocka_unit_test(test_wait_until_input),
        cmocka_unit_test(test_wait_until_eof),
        cmocka_unit_test(test_wait_deadline),
        cmocka_unit_test(test_wait_full_buffer_handover),
        cmocka_unit_test(test_eof_after_kept_bytes),
        cmocka_unit_test(test_eof_waits_for_sink),
        cmocka_unit_test(test_stage_close_delivers),
        cmocka_unit_test(test_stage_reset_error_nomem),
        cmocka_unit_test(test_add_stage_order),
        cmocka_unit_test(test_add_stage_pending_is_input),
        cmocka_unit_test(test_add_stage_pending_is_output),
        cmocka_unit_test(test_next_wakeup),
        cmocka_unit_test(test_keep_ready_only),
        cmocka_unit_test(test_release_with_stages),
        cmocka_unit_test(test_toxic_latency),
        cmocka_unit_test(test_toxic_pieces),
        cmocka_unit_test(test_toxic_actions),
        cmocka_unit_test(test_toxic_with_codec),
        cmocka_unit_test(test_toxic_prefix_waits_for_queued_input_at_eof),
        cmocka_unit_test(test_ss_round_trip),
        cmocka_unit_test(test_ss_corrupt),
    };
    return cmocka_run_group_tests(tests, setup_ops, NULL);
}
