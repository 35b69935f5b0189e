/* test_yamux.c - unit tests for proto/yamux: the header codec, the
 * receiving state machine, the builders, and a scripted conversation
 * between a client and a server yamux_conn.
 *
 * Every valid input goes through expect_events(): fed whole, split at every
 * byte position, and byte by byte, each piece in a heap block of exactly
 * its size (ASan flags any read past it), the events must read the same.
 * Events are compared as text ("OPENED 1;DATA 1 hi;FIN 1;"), with the DATA
 * pieces of one frame joined, since how a frame's payload is cut depends on
 * the split and is allowed to.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/yamux.h"

#define W YAMUX_INITIAL_WINDOW

/* ---- building input ------------------------------------------------------ */

struct msg { uint8_t b[4096]; size_t n; };

static void frame(struct msg *m, uint8_t type, uint16_t flags, uint32_t id, uint32_t length)
{
    struct yamux_header h = { YAMUX_VERSION, type, flags, id, length };

    assert_true(m->n + YAMUX_HEADER_SIZE <= sizeof m->b);
    yamux_write_header(m->b + m->n, &h);
    m->n += YAMUX_HEADER_SIZE;
}

/* A Data frame with a text payload. */
static void data(struct msg *m, uint16_t flags, uint32_t id, const char *text)
{
    size_t n = strlen(text);

    frame(m, YAMUX_DATA, flags, id, (uint32_t)n);
    assert_true(m->n + n <= sizeof m->b);
    memcpy(m->b + m->n, text, n);
    m->n += n;
}

/* ---- recording events ------------------------------------------------------ */

struct rec {
    char out[8192];
    size_t n;
    uint32_t did;           /* DATA being joined: its stream, and bytes */
    char dbuf[4096];
    size_t dlen;
    int done;               /* ERROR seen */
};

static void rec_printf(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(r->out + r->n, sizeof r->out - r->n, fmt, ap);
    va_end(ap);
    assert_true(k >= 0 && (size_t)k < sizeof r->out - r->n);
    r->n += (size_t)k;
}

static void rec_flush(struct rec *r)
{
    if (r->dlen)
        rec_printf(r, "DATA %u %.*s;", r->did, (int)r->dlen, r->dbuf);
    r->dlen = 0;
}

static void rec_event(struct rec *r, const struct yamux_event *ev)
{
    if (ev->type != YAMUX_EV_DATA || ev->id != r->did)
        rec_flush(r);
    switch (ev->type) {
    case YAMUX_EV_DATA:
        assert_true(ev->len > 0 && r->dlen + ev->len <= sizeof r->dbuf);
        memcpy(r->dbuf + r->dlen, ev->data, ev->len);
        r->dlen += ev->len;
        r->did = ev->id;
        return;
    case YAMUX_EV_OPENED:  rec_printf(r, "OPENED %u;", ev->id); return;
    case YAMUX_EV_REFUSED: rec_printf(r, "REFUSED %u;", ev->id); return;
    case YAMUX_EV_ACKED:   rec_printf(r, "ACKED %u;", ev->id); return;
    case YAMUX_EV_WINDOW:  rec_printf(r, "WINDOW %u %u;", ev->id, ev->value); return;
    case YAMUX_EV_FIN:     rec_printf(r, "FIN %u;", ev->id); return;
    case YAMUX_EV_RST:     rec_printf(r, "RST %u;", ev->id); return;
    case YAMUX_EV_PING:    rec_printf(r, "PING %u %s;", ev->value, ev->ack ? "ack" : "syn"); return;
    case YAMUX_EV_GOAWAY:  rec_printf(r, "GOAWAY %u;", ev->value); return;
    case YAMUX_EV_ERROR:
        rec_printf(r, "ERROR %s;", ev->reason);
        r->done = 1;
        return;
    default:
        fail_msg("unexpected event type %d", ev->type);
    }
}

/* Feeds one piece, in a heap block of exactly its size, until NONE. */
static void feed_piece(struct yamux_conn *c, const uint8_t *p, size_t len, struct rec *r)
{
    uint8_t *b = malloc(len ? len : 1), *end;
    struct yamux_event ev;
    size_t off = 0, used;
    enum yamux_ev_type t;

    assert_non_null(b);
    memcpy(b, p, len);
    end = b + len;
    while (!r->done) {
        t = yamux_feed(c, b + off, len - off, &ev, &used);
        assert_int_equal(t, ev.type);
        assert_true(used <= len - off);
        off += used;
        if (t == YAMUX_EV_NONE) {
            assert_int_equal(off, len);     /* NONE: everything was taken */
            break;
        }
        if (t == YAMUX_EV_DATA)
            assert_true(ev.data >= b && ev.data + ev.len <= end && ev.data + ev.len == b + off);
        rec_event(r, &ev);
    }
    free(b);
}

typedef void setup_fn(struct yamux_conn *c);

/* A fresh conn (after setup), fed m cut at the given positions (cuts[]
 * ascending, ncut of them). The text of its events is left in r. */
static void run_cuts(enum yamux_role role, setup_fn *setup, const struct msg *m, const size_t *cuts, size_t ncut,
                     struct rec *r)
{
    struct yamux_conn c;
    size_t from = 0;

    memset(r, 0, sizeof *r);
    assert_int_equal(yamux_conn_init(&c, role, 4), 0);
    if (setup)
        setup(&c);
    for (size_t i = 0; i <= ncut; i++) {
        size_t to = i < ncut ? cuts[i] : m->n;

        feed_piece(&c, m->b + from, to - from, r);
        from = to;
    }
    rec_flush(r);
    yamux_conn_free(&c);
}

/* The every-split check described at the top. */
static void expect_events(enum yamux_role role, setup_fn *setup, const struct msg *m, const char *want)
{
    static size_t every[sizeof ((struct msg *)0)->b];
    struct rec r;

    run_cuts(role, setup, m, NULL, 0, &r);
    assert_string_equal(r.out, want);
    for (size_t k = 0; k <= m->n; k++) {
        run_cuts(role, setup, m, &k, 1, &r);
        if (strcmp(r.out, want) != 0)
            fail_msg("split at %zu/%zu:\n got  %s\n want %s", k, m->n, r.out, want);
    }
    for (size_t k = 0; k < m->n; k++)
        every[k] = k;
    run_cuts(role, setup, m, every, m->n, &r);
    assert_string_equal(r.out, want);
}

/* Client side that has opened streams 1 and 3 (to receive their replies). */
static void open_two(struct yamux_conn *c)
{
    uint8_t out[YAMUX_HEADER_SIZE];
    uint32_t id;

    assert_int_equal(yamux_open_stream(c, &id, out), YAMUX_OK);
    assert_int_equal(id, 1);
    assert_int_equal(yamux_open_stream(c, &id, out), YAMUX_OK);
    assert_int_equal(id, 3);
}

/* ---- header codec ------------------------------------------------------------ */

static void test_header_roundtrip(void **state)
{
    (void)state;
    for (uint8_t type = 0; type <= YAMUX_GO_AWAY; type++) {
        for (uint16_t flags = 0; flags < 16; flags++) {
            uint32_t id = type >= YAMUX_PING ? 0 : 0x01020305u;
            struct yamux_header h = { 0, type, flags, id, 0xA1B2C3D4u }, got;
            uint8_t b[YAMUX_HEADER_SIZE];
            const char *why = NULL;
            size_t used = 99;

            yamux_write_header(b, &h);
            for (size_t k = 0; k < YAMUX_HEADER_SIZE; k++) {
                assert_int_equal(yamux_parse_header(b, k, &got, &used, &why), YAMUX_PARSE_NEED_MORE);
                assert_int_equal(used, 99);
            }
            assert_int_equal(yamux_parse_header(b, sizeof b, &got, &used, &why), YAMUX_PARSE_DONE);
            assert_int_equal(used, YAMUX_HEADER_SIZE);
            assert_int_equal(got.type, type);
            assert_int_equal(got.flags, flags);
            assert_int_equal(got.stream, id);
            assert_int_equal(got.length, 0xA1B2C3D4u);
            assert_int_equal(b[2], 0);              /* big endian flags */
            assert_int_equal(b[3], flags);
            assert_int_equal(b[8], 0xA1);
        }
    }
}

static void expect_header_invalid(const uint8_t *b, size_t early, const char *why_want)
{
    struct yamux_header h;
    const char *why = NULL;
    size_t used = 99;

    for (size_t k = 0; k <= YAMUX_HEADER_SIZE; k++) {
        int st = yamux_parse_header(b, k, &h, &used, &why);

        assert_int_equal(st, k < early ? YAMUX_PARSE_NEED_MORE : YAMUX_PARSE_INVALID);
    }
    assert_int_equal(used, 99);
    assert_string_equal(why, why_want);
}

static void test_header_invalid(void **state)
{
    static const uint8_t bad_version[] = { 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 };
    static const uint8_t bad_type[] = { 0, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 };
    static const uint8_t ping_stream[] = { 0, 2, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7 };
    static const uint8_t goaway_stream[] = { 0, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0 };
    static const uint8_t data_zero[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5 };
    static const uint8_t window_zero[] = { 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5 };

    (void)state;
    expect_header_invalid(bad_version, 1, "unsupported version");
    expect_header_invalid(bad_type, 2, "unknown frame type");
    expect_header_invalid(ping_stream, 8, "ping or go-away on a stream");
    expect_header_invalid(goaway_stream, 8, "ping or go-away on a stream");
    expect_header_invalid(data_zero, 8, "data or window update on stream 0");
    expect_header_invalid(window_zero, 8, "data or window update on stream 0");
}

/* ---- receiving: valid input at every split --------------------------------- */

static void test_feed_server_stream(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0);     /* Go opens like this */
    data(&m, 0, 1, "hello");
    frame(&m, YAMUX_DATA, 0, 1, 0);                      /* empty: no event */
    frame(&m, YAMUX_WINDOW_UPDATE, 0, 1, 1000);
    frame(&m, YAMUX_WINDOW_UPDATE, 0, 1, 0);             /* zero delta: no event */
    data(&m, YAMUX_SYN, 3, "syn with data");
    data(&m, YAMUX_FIN, 1, "bye");
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_FIN, 3, 0);
    frame(&m, YAMUX_WINDOW_UPDATE, 0, 1, 5);             /* window after its FIN is fine */
    expect_events(YAMUX_SERVER, NULL, &m,
                  "OPENED 1;DATA 1 hello;WINDOW 1 1000;OPENED 3;DATA 3 syn with data;"
                  "DATA 1 bye;FIN 1;FIN 3;WINDOW 1 5;");
}

static void test_feed_all_flags(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    data(&m, YAMUX_SYN | YAMUX_FIN, 1, "one shot");     /* open, send, close */
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN | YAMUX_ACK, 3, 7); /* ACK on their own stream: ignored */
    data(&m, YAMUX_SYN | YAMUX_RST, 5, "dropped");      /* reset supersedes data */
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_RST | YAMUX_FIN, 3, 9);
    data(&m, 0, 5, "late");                             /* forgotten stream: skipped */
    frame(&m, YAMUX_WINDOW_UPDATE, 0x10, 1, 2);         /* unknown flag bit: ignored */
    frame(&m, YAMUX_WINDOW_UPDATE, 0, 7, 0);            /* never opened */
    expect_events(YAMUX_SERVER, NULL, &m, "OPENED 1;DATA 1 one shot;FIN 1;OPENED 3;WINDOW 3 7;OPENED 5;RST 5;"
                                          "RST 3;WINDOW 1 2;ERROR frame for a stream never opened;");
}

static void test_feed_client_side(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_ACK, 1, 0);
    data(&m, YAMUX_ACK, 3, "reply");
    data(&m, 0, 1, "more");
    data(&m, YAMUX_SYN, 2, "server opens");
    frame(&m, YAMUX_DATA, YAMUX_RST, 3, 0);
    frame(&m, YAMUX_WINDOW_UPDATE, 0, 3, 1);            /* after RST: skipped */
    data(&m, 0, 3, "late data");
    frame(&m, YAMUX_PING, YAMUX_SYN, 0, 42);
    frame(&m, YAMUX_PING, YAMUX_ACK, 0, 0xFFFFFFFFu);
    frame(&m, YAMUX_PING, 0, 0, 1);                     /* neither: an answer, as in Go */
    frame(&m, YAMUX_GO_AWAY, 0, 0, YAMUX_GOAWAY_NORMAL);
    data(&m, YAMUX_FIN, 1, "still open");               /* go-away leaves streams alone */
    frame(&m, YAMUX_GO_AWAY, 0, 0, YAMUX_GOAWAY_INTERNAL);
    expect_events(YAMUX_CLIENT, open_two, &m,
                  "ACKED 1;ACKED 3;DATA 3 reply;DATA 1 more;OPENED 2;DATA 2 server opens;RST 3;PING 42 syn;"
                  "PING 4294967295 ack;PING 1 ack;GOAWAY 0;DATA 1 still open;FIN 1;GOAWAY 2;");
}

static void test_feed_ack_state(void **state)
{
    struct yamux_conn c;
    struct msg m = { .n = 0 };
    struct rec r = { .n = 0 };

    (void)state;
    assert_int_equal(yamux_conn_init(&c, YAMUX_CLIENT, 0), 0);
    open_two(&c);
    assert_int_equal(yamux_stream_state(&c, 1), YAMUX_ST_OPEN | YAMUX_ST_LOCAL);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_ACK, 1, 0);
    feed_piece(&c, m.b, m.n, &r);
    assert_int_equal(yamux_stream_state(&c, 1), YAMUX_ST_OPEN | YAMUX_ST_LOCAL | YAMUX_ST_ESTAB);
    assert_int_equal(yamux_stream_state(&c, 3), YAMUX_ST_OPEN | YAMUX_ST_LOCAL);
    assert_string_equal(r.out, "ACKED 1;");     /* once: a second ACK says nothing new */
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_ACK, 1, 0);
    feed_piece(&c, m.b, m.n, &r);
    assert_string_equal(r.out, "ACKED 1;");
    yamux_conn_free(&c);
}

/* A frame of exactly the window passes and closes it; the window update
 * that the receiver builds reopens it. */
static void test_feed_full_window(void **state)
{
    struct yamux_conn c;
    uint8_t *big = calloc(1, YAMUX_HEADER_SIZE + W), out[YAMUX_HEADER_SIZE];
    struct yamux_header h = { 0, YAMUX_DATA, YAMUX_SYN, 1, W };
    struct yamux_event ev;
    size_t used, off = 0, got = 0;

    (void)state;
    assert_non_null(big);
    assert_int_equal(yamux_conn_init(&c, YAMUX_SERVER, 0), 0);
    yamux_write_header(big, &h);
    assert_int_equal(yamux_feed(&c, big, YAMUX_HEADER_SIZE + W, &ev, &used), YAMUX_EV_OPENED);
    off += used;
    while (yamux_feed(&c, big + off, YAMUX_HEADER_SIZE + W - off, &ev, &used) == YAMUX_EV_DATA) {
        off += used;
        got += ev.len;
    }
    assert_int_equal(got, W);
    assert_int_equal(off, YAMUX_HEADER_SIZE + W);
    /* Drained bit by bit: nothing until half the window, then all of it. */
    assert_int_equal(yamux_build_window_update(&c, 1, 0, out), YAMUX_OK);  /* the owed ACK */
    assert_int_equal(out[3], YAMUX_ACK);
    assert_int_equal(yamux_build_window_update(&c, 1, W / 2 - 1, out), YAMUX_IDLE);
    assert_int_equal(yamux_build_window_update(&c, 1, 1, out), YAMUX_OK);
    assert_int_equal(out[1], YAMUX_WINDOW_UPDATE);
    assert_int_equal(out[3], 0);
    assert_memory_equal(out + 8, "\x00\x02\x00\x00", 4);    /* delta W / 2 */
    assert_int_equal(yamux_build_window_update(&c, 1, W / 2 + 1, out), YAMUX_E_ARG);
    assert_int_equal(yamux_build_window_update(&c, 1, W / 2, out), YAMUX_OK);
    assert_int_equal(yamux_build_window_update(&c, 1, 1, out), YAMUX_E_ARG);
    free(big);
    yamux_conn_free(&c);
}

/* A stream forgotten by our RST while one of its Data frames is half fed:
 * set_user(id, NULL) still reaches the rest of that frame, so a caller
 * that frees its stream is never handed the old pointer. */
static void test_set_user_rest_of_frame(void **state)
{
    struct yamux_conn c;
    struct msg m = { .n = 0 };
    struct yamux_event ev;
    uint8_t out[YAMUX_HEADER_SIZE];
    size_t used, off = 0;
    int tag;

    (void)state;
    assert_int_equal(yamux_conn_init(&c, YAMUX_SERVER, 0), 0);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0);
    data(&m, 0, 1, "0123456789");
    assert_int_equal(yamux_feed(&c, m.b, m.n, &ev, &used), YAMUX_EV_OPENED);
    off += used;
    assert_int_equal(yamux_set_user(&c, 1, &tag), YAMUX_OK);
    assert_int_equal(yamux_feed(&c, m.b + off, m.n - off - 6, &ev, &used), YAMUX_EV_DATA);
    off += used;
    assert_ptr_equal(ev.user, &tag);
    assert_int_equal(yamux_build_rst(&c, 1, out), YAMUX_OK);         /* forgotten */
    assert_int_equal(yamux_set_user(&c, 1, NULL), YAMUX_E_NOSTREAM);
    assert_int_equal(yamux_feed(&c, m.b + off, m.n - off, &ev, &used), YAMUX_EV_DATA);
    assert_null(ev.user);
    yamux_conn_free(&c);
}

/* ---- receiving: every error path --------------------------------------------- */

static void expect_error(enum yamux_role role, setup_fn *setup, const struct msg *m, const char *want)
{
    expect_events(role, setup, m, want);
}

static void test_errors_header(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    frame(&m, YAMUX_PING, YAMUX_SYN, 0, 1);
    memcpy(m.b + m.n, "\x01\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00", 12);
    m.n += 12;
    frame(&m, YAMUX_PING, YAMUX_SYN, 0, 2);        /* never reached: sticky */
    expect_error(YAMUX_SERVER, NULL, &m, "PING 1 syn;ERROR unsupported version;");

    m.n = 0;
    frame(&m, 7, 0, 1, 0);
    expect_error(YAMUX_SERVER, NULL, &m, "ERROR unknown frame type;");
    m.n = 0;
    frame(&m, YAMUX_GO_AWAY, 0, 2, 0);
    expect_error(YAMUX_SERVER, NULL, &m, "ERROR ping or go-away on a stream;");
    m.n = 0;
    frame(&m, YAMUX_PING, YAMUX_SYN, 9, 0);
    expect_error(YAMUX_SERVER, NULL, &m, "ERROR ping or go-away on a stream;");
    m.n = 0;
    data(&m, 0, 0, "x");
    expect_error(YAMUX_SERVER, NULL, &m, "ERROR data or window update on stream 0;");
}

static void test_errors_stream_ids(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    data(&m, 0, 1, "x");                                    /* never opened */
    expect_error(YAMUX_SERVER, NULL, &m, "ERROR frame for a stream never opened;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, 0, 5, 1);               /* client: ours, not yet taken */
    expect_error(YAMUX_CLIENT, open_two, &m, "ERROR frame for a stream never opened;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 2, 0);       /* server got an even SYN */
    expect_error(YAMUX_SERVER, NULL, &m, "ERROR SYN with our parity;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, 0);       /* client got an odd SYN */
    expect_error(YAMUX_CLIENT, NULL, &m, "ERROR SYN with our parity;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0);       /* reuse while open */
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 3;ERROR stream id reused while open;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 5, 0);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0);       /* overtaken SYN: fine */
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 5, 0);       /* but 5 is open */
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 5;OPENED 3;ERROR stream id reused while open;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN | YAMUX_RST, 2 * YAMUX_SYN_REORDER + 1, 0);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0);       /* far below: a reuse */
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 131073;RST 131073;ERROR stream id reused (far below the newest);");
}

static void test_errors_windows(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    frame(&m, YAMUX_DATA, YAMUX_SYN, 1, W + 1);            /* header alone is enough */
    expect_error(YAMUX_SERVER, NULL, &m, "ERROR receive window exceeded;");
    m.n = 0;
    data(&m, YAMUX_SYN, 1, "abc");
    frame(&m, YAMUX_DATA, 0, 1, W - 2);                     /* 3 + W - 2 > W */
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 1;DATA 1 abc;ERROR receive window exceeded;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 1, UINT32_MAX - W);  /* exactly 2^32 - 1 */
    frame(&m, YAMUX_WINDOW_UPDATE, 0, 1, 1);
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 1;WINDOW 1 4294705151;ERROR send window overflow;");
    m.n = 0;
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN | YAMUX_RST, 1, 0);
    frame(&m, YAMUX_DATA, 0, 1, W + 1);                     /* forgotten, yet bounded */
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 1;RST 1;ERROR data beyond any window on a closed stream;");
}

static void test_errors_fin(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    data(&m, YAMUX_SYN | YAMUX_FIN, 1, "a");
    data(&m, 0, 1, "b");
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 1;DATA 1 a;FIN 1;ERROR data after FIN;");
    m.n = 0;
    data(&m, YAMUX_SYN | YAMUX_FIN, 1, "a");
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_FIN, 1, 0);
    expect_error(YAMUX_SERVER, NULL, &m, "OPENED 1;DATA 1 a;FIN 1;ERROR second FIN;");
}

/* Too many streams is not the peer's error (it cannot know our limit):
 * the stream is refused, its frames skipped, the others go on. */
static void test_too_many_streams(void **state)
{
    struct msg m = { .n = 0 };

    (void)state;
    for (uint32_t id = 1; id <= 9; id += 2)
        frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, id, 0);  /* the table holds 4 */
    data(&m, 0, 9, "skipped");
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_RST, 1, 0);
    data(&m, YAMUX_SYN, 11, "room again");
    expect_events(YAMUX_SERVER, NULL, &m,
                  "OPENED 1;OPENED 3;OPENED 5;OPENED 7;REFUSED 9;RST 1;OPENED 11;DATA 11 room again;");
}

static void test_refused_after_goaway(void **state)
{
    struct yamux_conn c;
    struct msg m = { .n = 0 };
    struct rec r = { .n = 0 };
    uint8_t out[YAMUX_HEADER_SIZE];

    (void)state;
    assert_int_equal(yamux_conn_init(&c, YAMUX_SERVER, 0), 0);
    assert_int_equal(yamux_build_goaway(&c, YAMUX_GOAWAY_NORMAL, out), YAMUX_OK);
    assert_memory_equal(out, "\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 12);
    data(&m, YAMUX_SYN, 1, "x");
    feed_piece(&c, m.b, m.n, &r);
    rec_flush(&r);
    assert_string_equal(r.out, "REFUSED 1;");
    assert_int_equal(yamux_build_rst(&c, 1, out), YAMUX_OK);
    assert_memory_equal(out, "\x00\x01\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00", 12);
    yamux_conn_free(&c);
}

static void test_dead_is_sticky(void **state)
{
    struct yamux_conn c;
    struct yamux_event ev;
    uint8_t out[YAMUX_HEADER_SIZE], bad[12] = { 9 };
    uint32_t id, n;
    size_t used;

    (void)state;
    assert_int_equal(yamux_conn_init(&c, YAMUX_CLIENT, 0), 0);
    assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_OK);
    assert_int_equal(yamux_feed(&c, bad, sizeof bad, &ev, &used), YAMUX_EV_ERROR);
    assert_int_equal(used, 12);
    assert_int_equal(ev.value, YAMUX_GOAWAY_PROTO);
    assert_int_equal(yamux_feed(&c, bad, sizeof bad, &ev, &used), YAMUX_EV_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_E_DEAD);
    assert_int_equal(yamux_build_data(&c, 1, 1, out, &n), YAMUX_E_DEAD);
    assert_int_equal(yamux_build_window_update(&c, 1, 0, out), YAMUX_E_DEAD);
    assert_int_equal(yamux_build_fin(&c, 1, out), YAMUX_E_DEAD);
    assert_int_equal(yamux_build_goaway(&c, YAMUX_GOAWAY_PROTO, out), YAMUX_OK);
    assert_int_equal(out[11], YAMUX_GOAWAY_PROTO);
    yamux_conn_free(&c);
}

/* ---- builders ------------------------------------------------------------------ */

static void test_build_frames(void **state)
{
    struct yamux_conn c;
    uint8_t out[YAMUX_HEADER_SIZE];
    uint32_t id, n;

    (void)state;
    yamux_build_ping(out, 0x01020304u, 0);
    assert_memory_equal(out, "\x00\x02\x00\x01\x00\x00\x00\x00\x01\x02\x03\x04", 12);
    yamux_build_ping(out, 7, 1);
    assert_memory_equal(out, "\x00\x02\x00\x02\x00\x00\x00\x00\x00\x00\x00\x07", 12);

    assert_int_equal(yamux_conn_init(&c, YAMUX_SERVER, 2), 0);
    assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_OK);
    assert_int_equal(id, 2);                                /* server: even */
    assert_memory_equal(out, "\x00\x01\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00", 12);
    assert_int_equal(yamux_build_data(&c, 2, 10, out, &n), YAMUX_OK);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x0a", 12);
    assert_int_equal(yamux_build_data(&c, 2, 0, out, &n), YAMUX_IDLE);   /* nothing owed */
    assert_int_equal(yamux_build_data(&c, 2, (size_t)1 << 40, out, &n), YAMUX_OK);
    assert_int_equal(n, W - 10);                            /* the rest of the window */
    assert_int_equal(yamux_send_window(&c, 2), 0);
    assert_int_equal(yamux_build_data(&c, 2, 1, out, &n), YAMUX_IDLE);
    assert_int_equal(n, 0);
    assert_int_equal(yamux_build_fin(&c, 2, out), YAMUX_OK);
    assert_memory_equal(out, "\x00\x01\x00\x04\x00\x00\x00\x02\x00\x00\x00\x00", 12);
    assert_int_equal(yamux_build_fin(&c, 2, out), YAMUX_E_STATE);
    assert_int_equal(yamux_build_data(&c, 2, 1, out, &n), YAMUX_E_STATE);
    assert_int_equal(yamux_stream_state(&c, 2), YAMUX_ST_OPEN | YAMUX_ST_LOCAL | YAMUX_ST_LOCAL_FIN);
    assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_OK);
    assert_int_equal(id, 4);
    assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_E_FULL);  /* max 2 */
    assert_int_equal(yamux_build_rst(&c, 4, out), YAMUX_OK);
    assert_int_equal(yamux_stream_state(&c, 4), 0);
    assert_int_equal(yamux_build_data(&c, 4, 1, out, &n), YAMUX_E_NOSTREAM);
    assert_int_equal(yamux_build_window_update(&c, 4, 1, out), YAMUX_E_NOSTREAM);
    assert_int_equal(yamux_build_rst(&c, 0, out), YAMUX_E_NOSTREAM);
    c.next_local = UINT32_MAX - 1;                          /* last even id */
    assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_OK);
    assert_int_equal(id, UINT32_MAX - 1);
    assert_int_equal(yamux_build_rst(&c, id, out), YAMUX_OK);
    assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_E_IDS);
    yamux_conn_free(&c);
}

/* The first frame for a stream the peer opened carries ACK, whatever it is. */
static void test_build_ack_rides_first_frame(void **state)
{
    struct yamux_conn c;
    struct msg m = { .n = 0 };
    struct rec r = { .n = 0 };
    uint8_t out[YAMUX_HEADER_SIZE];
    uint32_t n;

    (void)state;
    assert_int_equal(yamux_conn_init(&c, YAMUX_CLIENT, 0), 0);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 2, 0);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 4, 0);
    frame(&m, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 6, 0);
    feed_piece(&c, m.b, m.n, &r);
    assert_int_equal(yamux_build_data(&c, 2, 0, out, &n), YAMUX_OK);   /* empty, for the ACK */
    assert_memory_equal(out, "\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x00", 12);
    assert_int_equal(yamux_build_data(&c, 2, 0, out, &n), YAMUX_IDLE);
    assert_int_equal(yamux_build_data(&c, 4, 3, out, &n), YAMUX_OK);
    assert_int_equal(out[3], YAMUX_ACK);
    assert_int_equal(yamux_build_fin(&c, 6, out), YAMUX_OK);
    assert_int_equal(out[3], YAMUX_ACK | YAMUX_FIN);
    assert_int_equal(yamux_stream_state(&c, 6), YAMUX_ST_OPEN | YAMUX_ST_ESTAB | YAMUX_ST_LOCAL_FIN);
    yamux_conn_free(&c);
}

/* Many streams opened and closed in a scrambled order: the hash table's
 * backward-shift deletion must keep every survivor findable. */
static void test_table_churn(void **state)
{
    struct yamux_conn c;
    uint8_t out[YAMUX_HEADER_SIZE];
    uint32_t id, open[64] = { 0 };
    unsigned seed = 12345;

    (void)state;
    assert_int_equal(yamux_conn_init(&c, YAMUX_CLIENT, 64), 0);
    for (int round = 0; round < 20000; round++) {
        unsigned k = (seed = seed * 1103515245u + 12345u) >> 16 & 63;

        if (open[k]) {
            assert_int_equal(yamux_build_rst(&c, open[k], out), YAMUX_OK);
            open[k] = 0;
        } else {
            assert_int_equal(yamux_open_stream(&c, &id, out), YAMUX_OK);
            open[k] = id;
        }
        if (round % 97 == 0)
            for (int i = 0; i < 64; i++)
                if (open[i])
                    assert_int_equal(yamux_stream_state(&c, open[i]), YAMUX_ST_OPEN | YAMUX_ST_LOCAL);
    }
    yamux_conn_free(&c);
}

/* ---- a conversation between two conns ------------------------------------------ */

struct wire { uint8_t *b; size_t n, cap; };

/* One side as an application would drive it: it acks what it is offered,
 * answers pings, checks every byte received against pattern(), and drains
 * data at once (so it grants credit back). */
struct side {
    struct yamux_conn c;
    struct wire out;            /* frames this side sent, not yet delivered */
    size_t got[8];              /* payload bytes received, per stream id */
    int opened[8], fin[8], rst[8];
    uint32_t pong;
    int pongs, goaway;
};

static uint8_t pattern(uint32_t id, size_t i)
{
    return (uint8_t)(id * 31 + i * 7 + (i >> 11));
}

static void put_wire(struct wire *w, const void *p, size_t n)
{
    assert_true(w->n + n <= w->cap);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* Sends stream id's pattern from *sent up to total, until the window closes. */
static void send_pattern(struct side *s, uint32_t id, size_t *sent, size_t total)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    uint32_t n;
    int rc;

    while (*sent < total) {
        rc = yamux_build_data(&s->c, id, total - *sent, hdr, &n);
        if (rc == YAMUX_IDLE)
            return;
        assert_int_equal(rc, YAMUX_OK);
        put_wire(&s->out, hdr, sizeof hdr);
        for (uint32_t i = 0; i < n; i++, ++*sent)
            put_wire(&s->out, &(uint8_t){ pattern(id, *sent) }, 1);
    }
}

static void on_event(struct side *s, const struct yamux_event *ev)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    int rc;

    assert_true(ev->id < 8);
    switch (ev->type) {
    case YAMUX_EV_OPENED:
        s->opened[ev->id] = 1;
        assert_int_equal(yamux_build_window_update(&s->c, ev->id, 0, hdr), YAMUX_OK);   /* the ACK */
        put_wire(&s->out, hdr, sizeof hdr);
        return;
    case YAMUX_EV_DATA:
        for (size_t i = 0; i < ev->len; i++)
            assert_int_equal(ev->data[i], pattern(ev->id, s->got[ev->id] + i));
        s->got[ev->id] += ev->len;
        rc = yamux_build_window_update(&s->c, ev->id, (uint32_t)ev->len, hdr);
        assert_true(rc == YAMUX_OK || rc == YAMUX_IDLE || rc == YAMUX_E_NOSTREAM);
        if (rc == YAMUX_OK)
            put_wire(&s->out, hdr, sizeof hdr);
        return;
    case YAMUX_EV_ACKED:
    case YAMUX_EV_WINDOW: return;       /* the script sends again */
    case YAMUX_EV_FIN:    s->fin[ev->id] = 1; return;
    case YAMUX_EV_RST:    s->rst[ev->id] = 1; return;
    case YAMUX_EV_GOAWAY: s->goaway = 1 + (int)ev->value; return;
    case YAMUX_EV_PING:
        if (ev->ack) {
            s->pong = ev->value;
            s->pongs++;
        } else {
            yamux_build_ping(hdr, ev->value, 1);
            put_wire(&s->out, hdr, sizeof hdr);
        }
        return;
    default:
        fail_msg("unexpected event %d (%s)", ev->type, ev->reason ? ev->reason : "");
    }
}

/* Everything `from` sent, fed to `to` in odd-sized pieces. */
static void deliver(struct side *from, struct side *to)
{
    struct yamux_event ev;
    size_t off = 0, used;

    while (off < from->out.n) {
        size_t end = off + 7777 < from->out.n ? off + 7777 : from->out.n;

        while (yamux_feed(&to->c, from->out.b + off, end - off, &ev, &used) != YAMUX_EV_NONE) {
            off += used;
            on_event(to, &ev);
        }
        off += used;
        assert_int_equal(off, end);
    }
    from->out.n = 0;
}

static struct side *side_new(enum yamux_role role)
{
    struct side *s = calloc(1, sizeof *s);

    assert_non_null(s);
    assert_int_equal(yamux_conn_init(&s->c, role, 0), 0);
    s->out.cap = 2 * W;
    s->out.b = malloc(s->out.cap);
    assert_non_null(s->out.b);
    return s;
}

static void side_free(struct side *s)
{
    yamux_conn_free(&s->c);
    free(s->out.b);
    free(s);
}

static void send_hdr(struct side *s, int rc, const uint8_t hdr[YAMUX_HEADER_SIZE])
{
    assert_int_equal(rc, YAMUX_OK);
    put_wire(&s->out, hdr, YAMUX_HEADER_SIZE);
}

/* Open, more than a window of data up (flow control must kick in), a
 * half-close with data still coming down, FIN both ways. */
static void talk_stream(struct side *cl, struct side *sv)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    size_t up = 0, down = 0;
    uint32_t id;
    int rounds = 0;

    send_hdr(cl, yamux_open_stream(&cl->c, &id, hdr), hdr);
    assert_int_equal(id, 1);
    send_pattern(cl, 1, &up, 600000);
    assert_int_equal(up, W);                        /* blocked on the window */
    for (; sv->got[1] < 600000 && rounds < 20; rounds++) {
        deliver(cl, sv);
        deliver(sv, cl);                            /* ACK, window updates */
        send_pattern(cl, 1, &up, 600000);
    }
    assert_int_equal(sv->got[1], 600000);
    assert_true(sv->opened[1] && rounds > 2);
    assert_int_equal(yamux_stream_state(&cl->c, 1), YAMUX_ST_OPEN | YAMUX_ST_LOCAL | YAMUX_ST_ESTAB);

    send_hdr(cl, yamux_build_fin(&cl->c, 1, hdr), hdr);    /* half-close */
    deliver(cl, sv);
    assert_true(sv->fin[1]);
    for (rounds = 0; cl->got[1] < 300000 && rounds < 20; rounds++) {
        send_pattern(sv, 1, &down, 300000);
        deliver(sv, cl);
        deliver(cl, sv);
    }
    assert_int_equal(cl->got[1], 300000);
    send_hdr(sv, yamux_build_fin(&sv->c, 1, hdr), hdr);
    deliver(sv, cl);
    assert_true(cl->fin[1]);
    assert_int_equal(yamux_stream_state(&cl->c, 1), 0);    /* closed both ways: forgotten */
    assert_int_equal(yamux_stream_state(&sv->c, 1), 0);
}

static void talk_rst_ping(struct side *cl, struct side *sv)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    size_t up = 0;
    uint32_t id;

    send_hdr(cl, yamux_open_stream(&cl->c, &id, hdr), hdr);
    assert_int_equal(id, 3);
    send_pattern(cl, 3, &up, 100);
    deliver(cl, sv);
    assert_int_equal(sv->got[3], 100);
    send_hdr(sv, yamux_build_rst(&sv->c, 3, hdr), hdr);
    send_pattern(cl, 3, &up, 200);                  /* in flight as the RST is */
    deliver(sv, cl);
    deliver(cl, sv);                                /* skipped by the server */
    assert_true(cl->rst[3]);
    assert_int_equal(sv->got[3], 100);
    assert_int_equal(yamux_stream_state(&cl->c, 3) | yamux_stream_state(&sv->c, 3), 0);

    yamux_build_ping(hdr, 42, 0);
    put_wire(&cl->out, hdr, sizeof hdr);
    deliver(cl, sv);
    deliver(sv, cl);
    assert_int_equal(cl->pongs, 1);
    assert_int_equal(cl->pong, 42);
}

/* The server opens a stream of its own, then says go-away: no new streams
 * either way, the open one goes on. */
static void talk_goaway(struct side *cl, struct side *sv)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    size_t up = 0, down = 0;
    uint32_t id;

    send_hdr(sv, yamux_open_stream(&sv->c, &id, hdr), hdr);
    assert_int_equal(id, 2);
    send_pattern(sv, 2, &down, 5000);
    deliver(sv, cl);
    deliver(cl, sv);
    assert_true(cl->opened[2]);
    assert_int_equal(cl->got[2], 5000);
    assert_int_equal(yamux_stream_state(&sv->c, 2), YAMUX_ST_OPEN | YAMUX_ST_LOCAL | YAMUX_ST_ESTAB);

    send_hdr(sv, yamux_build_goaway(&sv->c, YAMUX_GOAWAY_NORMAL, hdr), hdr);
    deliver(sv, cl);
    assert_int_equal(cl->goaway, 1 + YAMUX_GOAWAY_NORMAL);
    assert_int_equal(yamux_open_stream(&cl->c, &id, hdr), YAMUX_E_GOAWAY);
    assert_int_equal(yamux_open_stream(&sv->c, &id, hdr), YAMUX_E_GOAWAY);
    send_pattern(cl, 2, &up, 1000);
    deliver(cl, sv);
    assert_int_equal(sv->got[2], 1000);
}

static void test_conversation(void **state)
{
    struct side *cl = side_new(YAMUX_CLIENT), *sv = side_new(YAMUX_SERVER);

    (void)state;
    talk_stream(cl, sv);
    talk_rst_ping(cl, sv);
    talk_goaway(cl, sv);
    side_free(cl);
    side_free(sv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_header_invalid),
        cmocka_unit_test(test_feed_server_stream),
        cmocka_unit_test(test_feed_all_flags),
        cmocka_unit_test(test_feed_client_side),
        cmocka_unit_test(test_feed_ack_state),
        cmocka_unit_test(test_feed_full_window),
        cmocka_unit_test(test_set_user_rest_of_frame),
        cmocka_unit_test(test_errors_header),
        cmocka_unit_test(test_errors_stream_ids),
        cmocka_unit_test(test_errors_windows),
        cmocka_unit_test(test_errors_fin),
        cmocka_unit_test(test_too_many_streams),
        cmocka_unit_test(test_refused_after_goaway),
        cmocka_unit_test(test_dead_is_sticky),
        cmocka_unit_test(test_build_frames),
        cmocka_unit_test(test_build_ack_rides_first_frame),
        cmocka_unit_test(test_table_churn),
        cmocka_unit_test(test_conversation),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
