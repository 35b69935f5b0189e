/* fuzz_yamux.c - libFuzzer target for proto/yamux.
 *
 * Input: byte 0 picks the side (bit 0: client or server) and the table size
 * (bits 1-3: 1..8 streams, small so that "table full" is reachable); the
 * rest is what the peer sent. Invariants checked (abort() on violation):
 *   - yamux_parse_header over every prefix of the wire: NEED_MORE until it
 *     becomes DONE (consumed 12) or INVALID, and stays so; header -> write
 *     -> the same 12 bytes;
 *   - yamux_feed, fed the wire whole, in pieces of a size taken from the
 *     input, and byte by byte (each piece copied to the end of a heap
 *     block, so ASan catches reads past it): the same events, with the DATA
 *     pieces of a frame joined; NONE only once the piece is all used;
 *     DATA points inside the piece and ends where *used does; nothing after
 *     ERROR;
 *   - an application that acks every OPENED and hands back exactly the
 *     bytes it got never sees E_ARG (the credit accounting cannot drift),
 *     and the frames the builders write parse back as valid headers. That
 *     run is compared with nothing: when credit is granted depends on how
 *     the payload was cut, and so, legitimately, does what comes after;
 *   - the stream table never holds more than max_streams.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/yamux.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

/* Byte-by-byte feeding is quadratic in nothing, but slow per byte; beyond
 * this the whole and chunked runs still cover the rest. */
#define BYTEWISE_LIMIT 4096
#define MAX_EVENTS 8192

/* An event in a split-independent form: DATA as an offset into the wire. */
struct rec_ev {
    uint8_t type;
    int ack;
    uint32_t id, value;
    size_t off, len;
};

struct run {
    struct rec_ev ev[MAX_EVENTS];
    size_t n;
};

static void check_frame(const uint8_t out[YAMUX_HEADER_SIZE])
{
    struct yamux_header h;
    const char *why;
    size_t used;

    CHECK(yamux_parse_header(out, YAMUX_HEADER_SIZE, &h, &used, &why) == YAMUX_PARSE_DONE);
}

/* What an application does with an event; the builders' answers checked.
 * credit: hand received bytes back as window. */
static void react(struct yamux_conn *c, const struct yamux_event *ev, int credit)
{
    uint8_t out[YAMUX_HEADER_SIZE];
    int rc;

    switch (ev->type) {
    case YAMUX_EV_OPENED:
        /* NOSTREAM: the frame that opened it also reset it. */
        rc = yamux_build_window_update(c, ev->id, 0, out);
        CHECK(rc == YAMUX_OK || rc == YAMUX_E_NOSTREAM);
        if (rc == YAMUX_OK)
            check_frame(out);
        break;
    case YAMUX_EV_DATA:
        if (!credit)
            break;
        rc = yamux_build_window_update(c, ev->id, (uint32_t)ev->len, out);
        CHECK(rc == YAMUX_OK || rc == YAMUX_IDLE || rc == YAMUX_E_NOSTREAM);
        if (rc == YAMUX_OK)
            check_frame(out);
        break;
    case YAMUX_EV_REFUSED:
        CHECK(yamux_build_rst(c, ev->id, out) == YAMUX_OK);
        check_frame(out);
        break;
    case YAMUX_EV_PING:
        yamux_build_ping(out, ev->value, 1);
        check_frame(out);
        break;
    default:
        break;
    }
    CHECK(c->nstreams <= c->max_streams);
}

static void record(struct run *r, const struct yamux_event *ev, size_t off)
{
    struct rec_ev *last = r->n ? &r->ev[r->n - 1] : NULL;

    if (ev->type == YAMUX_EV_DATA && last && last->type == YAMUX_EV_DATA && last->id == ev->id
        && last->off + last->len == off) {
        last->len += ev->len;       /* the same frame, cut differently */
        return;
    }
    CHECK(r->n < MAX_EVENTS);
    r->ev[r->n++] = (struct rec_ev){ (uint8_t)ev->type, ev->ack, ev->id, ev->value, off, ev->len };
}

/* Feeds wire[0..len) in pieces of `chunk` bytes into a fresh conn. */
static void run_feed(const uint8_t *wire, size_t len, size_t chunk, enum yamux_role role, uint32_t max,
                     int credit, struct run *r)
{
    struct yamux_conn c;
    struct yamux_event ev;
    size_t base = 0, off, used, cap = chunk < len ? chunk : len;
    /* One block per run, not per piece: byte-by-byte runs would otherwise
     * fill ASan's quarantine with thousands of 1-byte blocks per input. */
    uint8_t *blk = malloc(cap ? cap : 1);
    int dead = 0;

    CHECK(blk != NULL);
    r->n = 0;
    CHECK(yamux_conn_init(&c, role, max) == 0);
    while (base < len && !dead) {
        size_t plen = len - base < chunk ? len - base : chunk;
        uint8_t *p = blk + cap - plen;      /* ends where the block ends */

        memcpy(p, wire + base, plen);
        for (off = 0;;) {
            enum yamux_ev_type t = yamux_feed(&c, p + off, plen - off, &ev, &used);

            CHECK(t == ev.type && used <= plen - off);
            off += used;
            if (t == YAMUX_EV_NONE) {
                CHECK(off == plen);
                break;
            }
            if (t == YAMUX_EV_DATA)
                CHECK(ev.len > 0 && ev.data >= p && ev.data + ev.len == p + off);
            record(r, &ev, t == YAMUX_EV_DATA ? base + (size_t)(ev.data - p) : 0);
            react(&c, &ev, credit);
            if (t == YAMUX_EV_ERROR) {
                CHECK(ev.reason != NULL);
                dead = 1;
                break;
            }
        }
        base += plen;
    }
    free(blk);
    yamux_conn_free(&c);
}

static void same_runs(const struct run *a, const struct run *b)
{
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct rec_ev *x = &a->ev[i], *y = &b->ev[i];

        CHECK(x->type == y->type && x->id == y->id && x->value == y->value && x->ack == y->ack);
        CHECK(x->off == y->off && x->len == y->len);
    }
}

static void walk_header(const uint8_t *wire, size_t len)
{
    int seen = YAMUX_PARSE_NEED_MORE;
    size_t lim = len < YAMUX_HEADER_SIZE + 4 ? len : YAMUX_HEADER_SIZE + 4;

    for (size_t k = 0; k <= lim; k++) {
        uint8_t *b = malloc(k ? k : 1), back[YAMUX_HEADER_SIZE];
        struct yamux_header h;
        const char *why = NULL;
        size_t used = 0;
        int st;

        CHECK(b != NULL);
        memcpy(b, wire, k);
        st = yamux_parse_header(b, k, &h, &used, &why);
        CHECK(seen == YAMUX_PARSE_NEED_MORE || st == seen);
        if (st == YAMUX_PARSE_DONE) {
            CHECK(used == YAMUX_HEADER_SIZE && k >= YAMUX_HEADER_SIZE);
            yamux_write_header(back, &h);
            CHECK(memcmp(back, b, YAMUX_HEADER_SIZE) == 0);
        }
        CHECK(st != YAMUX_PARSE_INVALID || why != NULL);
        seen = st;
        free(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run whole, other;
    enum yamux_role role;
    uint32_t max;
    size_t chunk;

    if (size < 1)
        return 0;
    role = (data[0] & 1) ? YAMUX_CLIENT : YAMUX_SERVER;
    max = 1 + ((data[0] >> 1) & 7);
    chunk = 1 + (data[0] >> 4) * 5;
    data++, size--;

    walk_header(data, size);
    run_feed(data, size, size ? size : 1, role, max, 0, &whole);
    run_feed(data, size, chunk, role, max, 0, &other);
    same_runs(&whole, &other);
    if (size <= BYTEWISE_LIMIT) {
        run_feed(data, size, 1, role, max, 0, &other);
        same_runs(&whole, &other);
    }
    run_feed(data, size, chunk, role, max, 1, &other);
    return 0;
}
