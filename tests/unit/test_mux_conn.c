/* test_mux_conn.c - unit tests for relay/mux_conn: one yamux connection on
 * a core/loop.h loop, and its streams as session endpoints.
 *
 * The rig: a mux_conn owns one end of an AF_UNIX socket pair; the test
 * plays the peer on the other end with the codec's header functions
 * (proto/yamux.h): it writes frames with exactly the flags a test needs
 * and parses what the connection sends into a list of frames (Data
 * payloads counted and kept per stream). No sessions: the endpoints are
 * test endpoints whose `ready` callback records the events, and the test
 * calls the endpoint ops as a session would. The loop is driven with
 * loop_run_once(); AF_UNIX pairs move bytes synchronously, so only the
 * keepalive tests wait (a few tens of ms, bounded).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "obs/log.h"
#include "proto/yamux.h"
#include "relay/endpoint.h"
#include "relay/mux_conn.h"

#define KiB 1024u
#define W YAMUX_INITIAL_WINDOW
#define MAX_FRAMES 8192
#define MAX_ID 64
#define MAX_TEPS 16

/* ---- test endpoints ---- */

struct tep {
    struct endpoint e;
    uint32_t ev;           /* events heard since the last tep_clear (OR) */
    int nready;
    int closed;            /* the test closed it (the rig closes the others) */
    uint32_t close_on;     /* events on which ready() closes it, as a session would */
};

static void tep_ready(void *owner, uint32_t events)
{
    struct tep *t = owner;
    t->ev |= events;
    t->nready++;
    if ((events & t->close_on) && !t->closed) {
        endpoint_close(&t->e, 0);
        t->closed = 1;
    }
}

static void tep_init(struct tep *t)
{
    memset(t, 0, sizeof(*t));
    t->e.ready = tep_ready;
    t->e.owner = t;
}

/* As a session closes its endpoint: once. */
static void tep_close(struct tep *t)
{
    endpoint_close(&t->e, 0);
    t->closed = 1;
}

static void tep_clear(struct tep *t)
{
    t->ev = 0;
    t->nready = 0;
}

/* ---- the rig ---- */

struct frame {
    uint8_t type;
    uint16_t flags;
    uint32_t id, length;
};

struct rig {
    struct loop *l;
    int fd;                        /* the peer's end */
    int peer_closed;
    struct mux_conn *c;
    /* the owner */
    int refuse;                    /* opened() returns -1 */
    int nopened, nclosed, nup;
    const char *why;
    struct tep teps[MAX_TEPS];
    int nteps;
    struct tep *by_id[MAX_ID];     /* peer-opened streams' endpoints */
    /* what the peer received */
    uint8_t acc[YAMUX_HEADER_SIZE];
    size_t acc_n;
    uint32_t body_left, body_id;
    struct frame frames[MAX_FRAMES];
    int nframes;
    uint8_t *data[MAX_ID];         /* Data payload per stream */
    size_t data_len[MAX_ID], data_cap[MAX_ID];
    int eof;                       /* the connection's side closed */
};

static int own_opened(void *owner, struct mux_conn *c, struct mux_stream *st)
{
    struct rig *r = owner;
    (void)c;
    r->nopened++;
    if (r->refuse) return -1;
    assert_true(r->nteps < MAX_TEPS);
    struct tep *t = &r->teps[r->nteps++];
    tep_init(t);
    mux_stream_bind(st, &t->e);
    assert_true(mux_stream_id(st) < MAX_ID);
    r->by_id[mux_stream_id(st)] = t;
    return 0;
}

static void own_up(void *owner, struct mux_conn *c, int err)
{
    struct rig *r = owner;
    (void)c;
    (void)err;
    r->nup++;
}

static void own_closed(void *owner, struct mux_conn *c, const char *why)
{
    struct rig *r = owner;
    assert_ptr_equal(c, r->c);
    r->nclosed++;
    r->why = why;
    r->c = NULL;
}

static const struct mux_conn_ops own_ops = { own_opened, own_up, own_closed };

static void nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* role: the connection's (the peer plays the other); sndbuf: the
 * connection's socket send buffer (0: the default). */
static void rig_init(struct rig *r, enum yamux_role role, uint32_t max_streams, uint32_t keepalive_ms, int sndbuf)
{
    int fds[2];
    memset(r, 0, sizeof(*r));
    log_set_level(LOG_QUIET);
    r->l = loop_new();
    assert_non_null(r->l);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    nonblock(fds[0]);
    nonblock(fds[1]);
    if (sndbuf) {
        assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
        assert_int_equal(setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf)), 0);
    }
    r->fd = fds[1];
    struct net_addr peer;
    memset(&peer, 0, sizeof(peer));
    struct mux_conn_cfg cfg = { .role = role, .max_streams = max_streams, .keepalive_ms = keepalive_ms,
                                .listener = "test" };
    r->c = mux_conn_new(r->l, fds[0], 0, &peer, &cfg, &own_ops, r);
    assert_non_null(r->c);
}

/* The peer reads everything the connection sent and parses it. */
static void peer_recv(struct rig *r)
{
    uint8_t buf[64 * KiB];
    for (;;) {
        ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
        if (n == 0) {
            r->eof = 1;
            return;
        }
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == ECONNRESET);
            return;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            if (r->body_left) {
                size_t k = (size_t)n - off < r->body_left ? (size_t)n - off : r->body_left;
                uint32_t id = r->body_id;
                assert_true(id < MAX_ID);
                if (r->data_len[id] + k > r->data_cap[id]) {
                    r->data_cap[id] = (r->data_len[id] + k) * 2;
                    r->data[id] = realloc(r->data[id], r->data_cap[id]);
                    assert_non_null(r->data[id]);
                }
                memcpy(r->data[id] + r->data_len[id], buf + off, k);
                r->data_len[id] += k;
                r->body_left -= (uint32_t)k;
                off += k;
                continue;
            }
            size_t k = YAMUX_HEADER_SIZE - r->acc_n;
            if (k > (size_t)n - off) k = (size_t)n - off;
            memcpy(r->acc + r->acc_n, buf + off, k);
            r->acc_n += k;
            off += k;
            if (r->acc_n < YAMUX_HEADER_SIZE) break;
            r->acc_n = 0;
            struct yamux_header h;
            size_t used;
            const char *why = NULL;
            assert_int_equal(yamux_parse_header(r->acc, YAMUX_HEADER_SIZE, &h, &used, &why), YAMUX_PARSE_DONE);
            assert_true(r->nframes < MAX_FRAMES);
            r->frames[r->nframes++] = (struct frame){ h.type, h.flags, h.stream, h.length };
            if (h.type == YAMUX_DATA && h.length) {
                r->body_left = h.length;
                r->body_id = h.stream;
            }
        }
    }
}

/* Runs the loop a few rounds (zero-delay timers need one each), the peer
 * reading meanwhile unless told not to. */
static void spin_ex(struct rig *r, int peer_reads)
{
    for (int i = 0; i < 6; i++) {
        assert_true(loop_run_once(r->l, 0) >= 0);
        if (peer_reads) peer_recv(r);
    }
}

static void spin(struct rig *r) { spin_ex(r, 1); }

static void peer_write(struct rig *r, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (int tries = 0; n && tries < 10000; tries++) {
        ssize_t k = send(r->fd, b, n, MSG_NOSIGNAL);
        if (k < 0) {
            assert_int_equal(errno, EAGAIN);
            spin(r);
            continue;
        }
        b += k;
        n -= (size_t)k;
    }
    assert_int_equal(n, 0);
}

static void peer_frame(struct rig *r, uint8_t type, uint16_t flags, uint32_t id, uint32_t length, const void *payload,
                       size_t plen)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    struct yamux_header h = { YAMUX_VERSION, type, flags, id, length };
    yamux_write_header(hdr, &h);
    peer_write(r, hdr, sizeof(hdr));
    if (plen) peer_write(r, payload, plen);
}

static void peer_data(struct rig *r, uint16_t flags, uint32_t id, const void *p, size_t n)
{
    peer_frame(r, YAMUX_DATA, flags, id, (uint32_t)n, p, n);
}

/* Frames of type for id whose flags include all of `flags`. */
static int count_frames(const struct rig *r, int type, uint32_t id, uint16_t flags)
{
    int n = 0;
    for (int i = 0; i < r->nframes; i++)
        if (r->frames[i].type == type && r->frames[i].id == id && (r->frames[i].flags & flags) == flags) n++;
    return n;
}

/* Frames that concern stream id at all. */
static int frames_for(const struct rig *r, uint32_t id)
{
    int n = 0;
    for (int i = 0; i < r->nframes; i++)
        if (r->frames[i].id == id) n++;
    return n;
}

/* Window granted to stream id by WindowUpdates since frame `from`. */
static uint64_t credit_granted(const struct rig *r, uint32_t id, int from)
{
    uint64_t n = 0;
    for (int i = from; i < r->nframes; i++)
        if (r->frames[i].type == YAMUX_WINDOW_UPDATE && r->frames[i].id == id) n += r->frames[i].length;
    return n;
}

static void rig_free(struct rig *r)
{
    if (r->c) mux_conn_close(r->c, "test over");
    for (int i = 0; i < r->nteps; i++)
        if (r->teps[i].e.ops && !r->teps[i].closed) tep_close(&r->teps[i]);
    for (int i = 0; i < 4; i++) loop_run_once(r->l, 0);
    loop_free(r->l);
    if (r->fd >= 0) close(r->fd);
    for (int i = 0; i < MAX_ID; i++) free(r->data[i]);
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 31u + seed + (i >> 8));
}

/* A stream the peer (client) opens on a server connection: SYN, bound. */
static struct tep *peer_open(struct rig *r, uint32_t id)
{
    peer_frame(r, YAMUX_WINDOW_UPDATE, YAMUX_SYN, id, 0, NULL, 0);
    spin(r);
    assert_non_null(r->by_id[id]);
    return r->by_id[id];
}

/* A stream we open on a client connection, acknowledged by the peer. */
static struct tep *local_open(struct rig *r, uint32_t *id, int ack)
{
    assert_true(r->nteps < MAX_TEPS);
    struct tep *t = &r->teps[r->nteps++];
    tep_init(t);
    int before = r->nframes;
    assert_int_equal(mux_conn_open_stream(r->c, &t->e, NULL, 0), 0);
    spin(r);
    assert_true(r->nframes > before);
    assert_int_equal(r->frames[before].type, YAMUX_WINDOW_UPDATE);
    assert_true(r->frames[before].flags & YAMUX_SYN);
    *id = r->frames[before].id;
    if (ack) {
        peer_frame(r, YAMUX_WINDOW_UPDATE, YAMUX_ACK, *id, 0, NULL, 0);
        spin(r);
    }
    return t;
}

/* ---- peer-opened streams: receiving and credit ---- */

/* The payload arrives and is readable once the session wants to read;
 * nothing goes back (no ACK, no credit) before endpoint_established(),
 * whose ACK carries the credit for what was read before it; after that,
 * credit goes back only as the session reads, never ahead of it. */
static void test_peer_stream_data_credit_ack(void **state)
{
    (void)state;
    static uint8_t in[200 * KiB], out[200 * KiB];
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t = peer_open(&r, 1);
    assert_int_equal(r.nopened, 1);
    pattern(in, sizeof(in), 1);
    peer_data(&r, 0, 1, in, 1000);
    spin(&r);
    assert_int_equal(t->nready, 0);                 /* no interest yet: not told */
    endpoint_want(&t->e, LOOP_READ);
    assert_int_equal(t->nready, 0);                 /* never from inside an operation */
    spin(&r);
    assert_true(t->ev & EPOLLIN);
    assert_false(t->ev & EPOLLERR);

    uint8_t buf[1000];
    assert_int_equal(endpoint_read(&t->e, buf, 400), 400);
    assert_int_equal(endpoint_read(&t->e, buf + 400, 1000), 600);
    assert_memory_equal(buf, in, 1000);
    errno = 0;
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EAGAIN);
    spin(&r);
    assert_int_equal(frames_for(&r, 1), 0);         /* the ACK (and credit) held */

    endpoint_established(&t->e);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_ACK), 1);
    assert_int_equal(credit_granted(&r, 1, 0), 1000);   /* what was read before the ACK */

    /* 200 KiB more: credit follows the reads, in batches. */
    int mark = r.nframes;
    peer_data(&r, 0, 1, in, sizeof(in));
    spin(&r);
    assert_int_equal(credit_granted(&r, 1, mark), 0);   /* nothing read yet */
    size_t got = 0;
    while (got < sizeof(in)) {
        ssize_t n = endpoint_read(&t->e, out + got, 16 * KiB);
        assert_true(n > 0);
        got += (size_t)n;
        spin(&r);
        assert_true(credit_granted(&r, 1, mark) <= got);
    }
    assert_memory_equal(out, in, sizeof(in));
    assert_true(credit_granted(&r, 1, mark) >= W / 2);
    /* The peer's window never ran out: all it sent plus what it may still
     * send is within the initial window. */
    rig_free(&r);
}

/* A peer-opened stream's FIN is EOF after its data; closing after both
 * sides finished sends FIN, not RST. */
static void test_peer_fin_then_clean_close(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t = peer_open(&r, 1);
    endpoint_established(&t->e);
    endpoint_want(&t->e, LOOP_READ);
    peer_data(&r, 0, 1, "bye", 3);
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_FIN, 1, 0, NULL, 0);     /* as Go's yamux sends it */
    spin(&r);
    assert_true(t->ev & EPOLLIN);
    uint8_t buf[16];
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 3);
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 0);
    assert_int_equal(endpoint_write(&t->e, "ok", 2), 2);     /* half-close: the other way goes on */
    tep_close(t);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_FIN), 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_RST), 0);
    assert_int_equal(r.data_len[1], 2);
    assert_int_equal(mux_conn_streams(r.c), 0);
    rig_free(&r);
}

/* Closing sends RST unless both sides finished: an open stream, and one
 * whose peer finished but whose data was not all read. */
static void test_close_resets_unfinished(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *a = peer_open(&r, 1), *b = peer_open(&r, 3);
    endpoint_established(&a->e);
    endpoint_established(&b->e);
    peer_data(&r, YAMUX_FIN, 3, "unread", 6);
    spin(&r);
    tep_close(a);
    tep_close(b);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_RST), 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 3, YAMUX_RST), 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 3, YAMUX_FIN), 0);

    /* reset() makes even a finished stream's close an abort. */
    struct tep *c = peer_open(&r, 5);
    endpoint_established(&c->e);
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_FIN, 5, 0, NULL, 0);
    spin(&r);
    c->e.ops->reset(&c->e);
    tep_close(c);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 5, YAMUX_RST), 1);
    rig_free(&r);
}

/* ---- streams we open ---- */

/* Writable only once acknowledged (EV_ACKED wakes it, an ACK alone with no
 * window or data); a RST before the ACK is an error, and reading then says
 * ECONNRESET. */
static void test_local_stream_ack_and_rst(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_CLIENT, 0, 0, 0);
    struct tep t;
    tep_init(&t);
    assert_int_equal(mux_conn_open_stream(r.c, &t.e, "\x01\x7f\x00\x00\x01\x00\x50", 7), 0);
    endpoint_want(&t.e, LOOP_WRITE);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_SYN), 1);
    assert_int_equal(r.data_len[1], 7);                      /* the first bytes follow the SYN */
    assert_false(t.ev & EPOLLOUT);                          /* not acknowledged yet */
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_ACK, 1, 0, NULL, 0);
    spin(&r);
    assert_true(t.ev & EPOLLOUT);
    assert_int_equal(endpoint_write(&t.e, "abc", 3), 3);
    spin(&r);
    assert_int_equal(r.data_len[1], 10);

    struct tep u;
    tep_init(&u);
    assert_int_equal(mux_conn_open_stream(r.c, &u.e, NULL, 0), 0);
    endpoint_want(&u.e, LOOP_WRITE | LOOP_READ);
    spin(&r);
    assert_int_equal(u.nready, 0);
    int mark = r.nframes;
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_RST, 3, 0, NULL, 0);
    spin(&r);
    assert_true(u.ev & EPOLLERR);
    assert_int_equal(mux_endpoint_error(&u.e), ECONNRESET);
    uint8_t buf[8];
    errno = 0;
    assert_int_equal(endpoint_read(&u.e, buf, sizeof(buf)), -1);
    assert_int_equal(errno, ECONNRESET);
    errno = 0;
    assert_int_equal(endpoint_write(&u.e, "x", 1), -1);
    assert_int_equal(errno, ECONNRESET);
    tep_close(&u);
    spin(&r);
    assert_int_equal(frames_for(&r, 3) - 0, 1);              /* only the SYN: no RST answers a RST */
    assert_true(r.nframes >= mark);
    tep_close(&t);
    rig_free(&r);
}

/* The send window: a write takes what it allows, then EAGAIN; a window
 * update wakes the stream that wants to write. */
static void test_window_zero_eagain_then_update(void **state)
{
    (void)state;
    static uint8_t in[W + 4 * KiB];
    struct rig r;
    rig_init(&r, YAMUX_CLIENT, 0, 0, 0);
    uint32_t id;
    struct tep *t = local_open(&r, &id, 1);
    pattern(in, sizeof(in), 3);
    size_t sent = 0;
    for (int i = 0; i < 1000; i++) {
        ssize_t n = endpoint_write(&t->e, in + sent, sizeof(in) - sent);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        sent += (size_t)n;
        spin(&r);
    }
    assert_int_equal(sent, W);                               /* exactly the window */
    spin(&r);
    assert_int_equal(r.data_len[id], W);
    tep_clear(t);
    endpoint_want(&t->e, LOOP_WRITE);
    spin(&r);
    assert_false(t->ev & EPOLLOUT);                          /* window closed: not writable */
    peer_frame(&r, YAMUX_WINDOW_UPDATE, 0, id, 4096, NULL, 0);
    spin(&r);
    assert_true(t->ev & EPOLLOUT);
    assert_int_equal(endpoint_write(&t->e, in + sent, 10000), 4096);
    spin(&r);
    assert_int_equal(r.data_len[id], W + 4096);
    assert_memory_equal(r.data[id], in, W + 4096);
    rig_free(&r);
}

/* The send buffer's high-water mark: streams write until the buffer is
 * full, the next is refused (EAGAIN); while it stays full nobody hears
 * EPOLLOUT; once the peer reads, every stream that wants to write is woken,
 * the refused one and one that only asked (it never wrote: the buffer was
 * filled by the others' successful writes). */
static void test_high_water_wakes_every_writer(void **state)
{
    (void)state;
    static uint8_t big[200 * KiB];
    struct rig r;
    rig_init(&r, YAMUX_CLIENT, 0, 0, 4096);
    uint32_t ids[4];
    struct tep *t[4];
    for (int i = 0; i < 4; i++) t[i] = local_open(&r, &ids[i], 1);
    pattern(big, sizeof(big), 4);
    assert_int_equal(endpoint_write(&t[0]->e, big, sizeof(big)), sizeof(big));
    assert_int_equal(endpoint_write(&t[1]->e, big, 100 * KiB), 100 * KiB);
    errno = 0;
    assert_int_equal(endpoint_write(&t[2]->e, big, 1000), -1);
    assert_int_equal(errno, EAGAIN);
    for (int i = 0; i < 4; i++) tep_clear(t[i]);
    endpoint_want(&t[2]->e, LOOP_WRITE);
    endpoint_want(&t[3]->e, LOOP_WRITE);                     /* never wrote */
    spin_ex(&r, 0);                                          /* the peer does not read */
    assert_false(t[2]->ev & EPOLLOUT);
    assert_false(t[3]->ev & EPOLLOUT);
    for (int i = 0; i < 200 && !((t[2]->ev & EPOLLOUT) && (t[3]->ev & EPOLLOUT)); i++) spin(&r);
    assert_true(t[2]->ev & EPOLLOUT);
    assert_true(t[3]->ev & EPOLLOUT);
    assert_int_equal(endpoint_write(&t[2]->e, big, 1000), 1000);
    assert_int_equal(endpoint_write(&t[3]->e, big, 1000), 1000);
    for (int i = 0; i < 20; i++) spin(&r);
    assert_int_equal(r.data_len[ids[0]], sizeof(big));
    assert_int_equal(r.data_len[ids[1]], 100 * KiB);
    assert_int_equal(r.data_len[ids[2]], 1000);
    assert_int_equal(r.data_len[ids[3]], 1000);
    assert_memory_equal(r.data[ids[0]], big, sizeof(big));
    rig_free(&r);
}

/* The same, with the stream asking to write before the buffer fills: it
 * is queued as writable, others fill the buffer before the dispatch, and
 * it must still be woken when the buffer drains. */
static void test_high_water_queued_before_full(void **state)
{
    (void)state;
    static uint8_t big[200 * KiB];
    struct rig r;
    rig_init(&r, YAMUX_CLIENT, 0, 0, 4096);
    uint32_t a_id, b_id, c_id;
    struct tep *a = local_open(&r, &a_id, 1), *b = local_open(&r, &b_id, 1), *c = local_open(&r, &c_id, 1);
    tep_clear(b);
    endpoint_want(&b->e, LOOP_WRITE);                        /* queued: writable now */
    assert_int_equal(endpoint_write(&a->e, big, 200 * KiB), 200 * KiB);
    assert_int_equal(endpoint_write(&c->e, big, 100 * KiB), 100 * KiB);   /* over the mark now */
    spin_ex(&r, 0);
    assert_false(b->ev & EPOLLOUT);                          /* full by the dispatch */
    for (int i = 0; i < 200 && !(b->ev & EPOLLOUT); i++) spin(&r);
    assert_true(b->ev & EPOLLOUT);
    rig_free(&r);
}

/* ---- the connection's end ---- */

/* The peer closes the TCP connection: every stream hears EPOLLERR at once,
 * data already received is still read, then reads and writes fail with
 * ECONNABORTED; asking for interest afterwards is answered again (the
 * orphan timer), and closing is safe. */
static void test_peer_closes_connection(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *a = peer_open(&r, 1), *b = peer_open(&r, 3);
    endpoint_established(&a->e);
    endpoint_want(&a->e, LOOP_READ);
    peer_data(&r, 0, 3, "left", 4);
    spin(&r);
    close(r.fd);
    r.fd = -1;
    spin_ex(&r, 0);
    assert_int_equal(r.nclosed, 1);
    assert_non_null(r.why);
    assert_true(a->ev & EPOLLERR);
    assert_true(b->ev & EPOLLERR);
    uint8_t buf[16];
    assert_int_equal(endpoint_read(&b->e, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "left", 4);
    errno = 0;
    assert_int_equal(endpoint_read(&b->e, buf, sizeof(buf)), -1);
    assert_int_equal(errno, ECONNABORTED);
    errno = 0;
    assert_int_equal(endpoint_read(&a->e, buf, sizeof(buf)), -1);
    assert_int_equal(errno, ECONNABORTED);
    errno = 0;
    assert_int_equal(endpoint_write(&a->e, "x", 1), -1);
    assert_int_equal(errno, ECONNABORTED);
    assert_int_equal(mux_endpoint_error(&a->e), ECONNABORTED);
    endpoint_shutdown_write(&a->e);                          /* harmless */
    endpoint_established(&b->e);                             /* harmless */

    tep_clear(a);
    endpoint_want(&a->e, LOOP_READ);
    assert_int_equal(a->nready, 0);                          /* not from inside the call */
    spin_ex(&r, 0);
    assert_true(a->ev & EPOLLERR);
    tep_close(a);
    tep_clear(b);
    endpoint_want(&b->e, LOOP_WRITE);
    tep_close(b);                                /* before its timer ran */
    spin_ex(&r, 0);
    assert_int_equal(b->nready, 0);
    rig_free(&r);
}

/* A protocol error: GoAway(protocol error) goes out, the connection closes,
 * its streams hear EPOLLERR. */
static void test_protocol_error_goaway(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *a = peer_open(&r, 1);
    uint8_t bad[YAMUX_HEADER_SIZE] = { 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 };   /* version 1 */
    peer_write(&r, bad, sizeof(bad));
    spin(&r);
    assert_int_equal(r.nclosed, 1);
    assert_int_equal(count_frames(&r, YAMUX_GO_AWAY, 0, 0), 1);
    assert_int_equal(r.frames[r.nframes - 1].type, YAMUX_GO_AWAY);
    assert_int_equal(r.frames[r.nframes - 1].length, YAMUX_GOAWAY_PROTO);
    assert_int_equal(r.eof, 1);
    assert_true(a->ev & EPOLLERR);

    /* A SYN with our parity is one too. */
    struct rig r2;
    rig_init(&r2, YAMUX_SERVER, 0, 0, 0);
    peer_frame(&r2, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 2, 0, NULL, 0);
    spin(&r2);
    assert_int_equal(r2.nclosed, 1);
    assert_int_equal(count_frames(&r2, YAMUX_GO_AWAY, 0, 0), 1);
    assert_int_equal(r2.frames[r2.nframes - 1].length, YAMUX_GOAWAY_PROTO);
    rig_free(&r2);
    rig_free(&r);
}

static void test_ping_answered(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    peer_frame(&r, YAMUX_PING, YAMUX_SYN, 0, 0xdeadbeef, NULL, 0);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_PING, 0, YAMUX_ACK), 1);
    assert_int_equal(r.frames[r.nframes - 1].length, 0xdeadbeef);
    assert_int_equal(r.nclosed, 0);
    rig_free(&r);
}

/* Runs the loop for up to ms (real time), answering pings if told. */
static void run_for(struct rig *r, unsigned ms, int answer)
{
    uint64_t end = clock_now_ms() + ms;
    int seen = 0;
    while (clock_now_ms() < end && r->c) {
        loop_run_once(r->l, 5);
        peer_recv(r);
        for (; answer && seen < r->nframes; seen++)
            if (r->frames[seen].type == YAMUX_PING && (r->frames[seen].flags & YAMUX_SYN))
                peer_frame(r, YAMUX_PING, YAMUX_ACK, 0, r->frames[seen].length, NULL, 0);
    }
}

/* Keepalive: pings every interval; answered, the connection lives on;
 * one unanswered when the next is due closes it. */
static void test_keepalive(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_CLIENT, 0, 20, 0);
    run_for(&r, 150, 1);
    assert_int_equal(r.nclosed, 0);
    assert_true(count_frames(&r, YAMUX_PING, 0, YAMUX_SYN) >= 3);
    struct tep *t = NULL;
    uint32_t id;
    t = local_open(&r, &id, 1);
    run_for(&r, 1000, 0);
    assert_int_equal(r.nclosed, 1);
    assert_non_null(strstr(r.why, "keepalive"));
    assert_true(t->ev & EPOLLERR);
    rig_free(&r);
}

/* GoAway: with no streams the connection closes; with one, when its last
 * stream closes. A peer's GoAway likewise. No new streams either way. */
static void test_goaway(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    mux_conn_goaway(r.c);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_GO_AWAY, 0, 0), 1);
    assert_int_equal(r.frames[0].length, YAMUX_GOAWAY_NORMAL);
    assert_int_equal(r.nclosed, 1);
    rig_free(&r);

    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *a = peer_open(&r, 1);
    endpoint_established(&a->e);
    mux_conn_goaway(r.c);
    assert_false(mux_conn_usable(r.c));
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 3, 0, NULL, 0);      /* refused after our go-away */
    spin(&r);
    assert_int_equal(r.nopened, 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 3, YAMUX_RST), 1);
    assert_int_equal(r.nclosed, 0);
    assert_int_equal(endpoint_write(&a->e, "still", 5), 5);           /* open streams go on */
    tep_close(a);
    spin(&r);
    assert_int_equal(r.nclosed, 1);
    rig_free(&r);

    rig_init(&r, YAMUX_CLIENT, 0, 0, 0);
    uint32_t id;
    struct tep *b = local_open(&r, &id, 1);
    peer_frame(&r, YAMUX_GO_AWAY, 0, 0, YAMUX_GOAWAY_NORMAL, NULL, 0);
    spin(&r);
    assert_int_equal(r.nclosed, 0);
    assert_false(mux_conn_usable(r.c));
    struct tep c;
    tep_init(&c);
    errno = 0;
    assert_int_equal(mux_conn_open_stream(r.c, &c.e, NULL, 0), -1);
    assert_int_equal(errno, EPIPE);
    tep_close(b);
    spin(&r);
    assert_int_equal(r.nclosed, 1);
    rig_free(&r);

    rig_init(&r, YAMUX_CLIENT, 0, 0, 0);
    peer_frame(&r, YAMUX_GO_AWAY, 0, 0, YAMUX_GOAWAY_NORMAL, NULL, 0);
    spin(&r);
    assert_int_equal(r.nclosed, 1);
    rig_free(&r);
}

/* max_streams: the peer's stream beyond it is reset, the owner not asked;
 * ours beyond it fail with EAGAIN. The owner's refusal resets too. */
static void test_max_streams(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 2, 0, 0);
    peer_open(&r, 1);
    peer_open(&r, 3);
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 5, 0, NULL, 0);
    spin(&r);
    assert_int_equal(r.nopened, 2);
    assert_null(r.by_id[5]);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 5, YAMUX_RST), 1);
    assert_true(mux_conn_full(r.c));
    r.refuse = 1;
    tep_close(r.by_id[1]);
    spin(&r);
    assert_false(mux_conn_full(r.c));
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_SYN, 7, 0, NULL, 0);
    spin(&r);
    assert_int_equal(r.nopened, 3);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 7, YAMUX_RST), 1);
    assert_int_equal(r.nclosed, 0);
    rig_free(&r);

    rig_init(&r, YAMUX_CLIENT, 1, 0, 0);
    uint32_t id;
    local_open(&r, &id, 1);
    struct tep t;
    tep_init(&t);
    errno = 0;
    assert_int_equal(mux_conn_open_stream(r.c, &t.e, NULL, 0), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(mux_conn_full(r.c));
    rig_free(&r);
}

/* ---- found in review ---- */

/* A FIN on a Data frame with a payload: the FIN is the frame's last event,
 * reported after the payload's bytes, which were the last of the read. It
 * must not wait for more bytes from the peer: EOF now. */
static void test_fin_on_data_frame(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t = peer_open(&r, 1);
    endpoint_established(&t->e);
    endpoint_want(&t->e, LOOP_READ);
    peer_data(&r, YAMUX_FIN, 1, "bye", 3);
    spin(&r);
    assert_true(t->ev & EPOLLIN);
    uint8_t buf[16];
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 3);
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 0);
    tep_close(t);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_FIN), 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_RST), 0);
    rig_free(&r);
}

/* A stream closed while a Data frame for it is half received: the rest of
 * the frame arrives after the stream was freed, and must be skipped (under
 * ASan a use after free otherwise). The same for a SYN on a Data frame
 * whose stream the owner refuses. */
static void test_close_mid_frame(void **state)
{
    (void)state;
    static uint8_t in[8 * KiB];
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t = peer_open(&r, 1);
    endpoint_established(&t->e);
    pattern(in, sizeof(in), 5);
    peer_frame(&r, YAMUX_DATA, 0, 1, sizeof(in), in, 1000);         /* 1000 of 8 KiB */
    spin(&r);
    tep_close(t);
    spin(&r);                                                       /* freed now */
    peer_write(&r, in + 1000, sizeof(in) - 1000);
    spin(&r);
    assert_int_equal(r.nclosed, 0);
    struct tep *u = peer_open(&r, 3);                               /* the connection goes on */
    endpoint_established(&u->e);
    peer_data(&r, 0, 3, "next", 4);
    endpoint_want(&u->e, LOOP_READ);
    spin(&r);
    uint8_t buf[8];
    assert_int_equal(endpoint_read(&u->e, buf, sizeof(buf)), 4);
    rig_free(&r);

    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    r.refuse = 1;
    peer_frame(&r, YAMUX_DATA, YAMUX_SYN, 1, sizeof(in), in, sizeof(in));
    spin(&r);
    assert_int_equal(r.nopened, 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_RST), 1);
    assert_int_equal(r.nclosed, 0);
    rig_free(&r);
}

/* A closed stream endpoint stays safe to ask and to close again, after
 * the loop freed the stream (a session that ended by a stage closes its
 * upstream and lives on, flushing, then closes both). */
static void test_closed_endpoint_is_inert(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_CLIENT, 0, 0, 0);
    uint32_t id;
    struct tep *t = local_open(&r, &id, 1);
    tep_close(t);
    spin(&r);                                                       /* the stream is freed */
    assert_int_equal(endpoint_is_open(&t->e), 0);
    assert_int_equal(mux_endpoint_error(&t->e), 0);
    char d[64] = "";
    if (t->e.ops->describe) t->e.ops->describe(&t->e, d, sizeof(d));
    endpoint_close(&t->e, 0);
    endpoint_close(&t->e, 1);
    spin(&r);
    assert_int_equal(t->nready, 0);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, id, YAMUX_RST), 1);
    rig_free(&r);
}

/* A peer-opened stream closed before endpoint_established() was refused
 * (its upstream failed): the peer must hear a RST, never an ACK, even if
 * it had sent everything and FIN and all of it was read. */
static void test_close_before_established_resets(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t = peer_open(&r, 1);
    endpoint_want(&t->e, LOOP_READ);
    peer_data(&r, 0, 1, "GET /", 5);
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_FIN, 1, 0, NULL, 0);
    spin(&r);
    uint8_t buf[16];
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 5);
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 0);
    tep_close(t);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_ACK), 0);
    assert_int_equal(count_frames(&r, YAMUX_DATA, 1, YAMUX_ACK), 0);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_RST), 1);
    rig_free(&r);
}

/* A SYN that carries RST: the stream is opened and forgotten in one frame.
 * No stream may be left that nobody will ever hear of (it would also not
 * count against max_streams). */
static void test_syn_with_rst(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 1, 0, 0);
    for (uint32_t id = 1; id < 10; id += 2) {
        peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_SYN | YAMUX_RST, id, 0, NULL, 0);
        spin(&r);
        struct tep *t = r.by_id[id];
        if (t) assert_true(t->ev & EPOLLERR);
    }
    assert_int_equal(mux_conn_streams(r.c), 0);
    rig_free(&r);
}

/* A peer-opened stream half-closed before endpoint_established() (mux-server
 * --dynamic refusing a malformed target lingers: FIN, then drains) was never
 * accepted: the peer hears a RST, never FIN+ACK, and the stream reads as
 * reset, so the lingering ends at once. */
static void test_shutdown_before_established_resets(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t = peer_open(&r, 1);
    peer_data(&r, 0, 1, "\x09garbage", 8);
    endpoint_want(&t->e, LOOP_READ);
    spin(&r);
    uint8_t buf[16];
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 8);
    endpoint_shutdown_write(&t->e);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_ACK), 0);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_FIN), 0);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_RST), 1);
    errno = 0;
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), -1);
    assert_int_equal(errno, ECONNRESET);
    tep_close(t);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_RST), 1);

    /* Once a reply went out (it carried the ACK), a half-close is a FIN. */
    struct tep *u = peer_open(&r, 3);
    assert_int_equal(endpoint_write(&u->e, "\x05\x01", 2), 2);
    endpoint_shutdown_write(&u->e);
    spin(&r);
    assert_int_equal(count_frames(&r, YAMUX_DATA, 3, YAMUX_ACK), 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 3, YAMUX_FIN), 1);
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 3, YAMUX_RST), 0);
    rig_free(&r);
}

/* Sessions closing their streams from inside the dispatch: every one of
 * the queued streams closes on its event (the last one, after our
 * go-away, ends the connection from inside the dispatch); then sessions
 * closing from inside the connection's death (EPOLLERR delivered at once). */
static void test_close_inside_dispatch(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = peer_open(&r, (uint32_t)(2 * i + 1));
        endpoint_established(&t[i]->e);
        endpoint_want(&t[i]->e, LOOP_READ);
        t[i]->close_on = EPOLLIN;
    }
    mux_conn_goaway(r.c);
    uint8_t all[3 * (YAMUX_HEADER_SIZE + 2)];
    for (int i = 0; i < 3; i++) {
        struct yamux_header h = { YAMUX_VERSION, YAMUX_DATA, 0, (uint32_t)(2 * i + 1), 2 };
        yamux_write_header(all + i * (YAMUX_HEADER_SIZE + 2), &h);
        memcpy(all + i * (YAMUX_HEADER_SIZE + 2) + YAMUX_HEADER_SIZE, "hi", 2);
    }
    peer_write(&r, all, sizeof(all));                   /* one read: all three queued at once */
    spin(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t[i]->nready, 1);
        assert_true(t[i]->closed);
        assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, (uint32_t)(2 * i + 1), YAMUX_RST), 1);
    }
    assert_int_equal(r.nclosed, 1);
    assert_int_equal(r.eof, 1);
    rig_free(&r);

    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    for (int i = 0; i < 3; i++) {
        t[i] = peer_open(&r, (uint32_t)(2 * i + 1));
        t[i]->close_on = EPOLLERR;
    }
    endpoint_want(&t[0]->e, LOOP_READ);
    close(r.fd);
    r.fd = -1;
    spin_ex(&r, 0);
    assert_int_equal(r.nclosed, 1);
    for (int i = 0; i < 3; i++) assert_true(t[i]->closed);
    rig_free(&r);
}

/* Draining: the last stream's close ends the connection, but only once
 * what it wrote has left: a peer that half-closed early and reads a big
 * answer slowly still gets all of it, its FIN, and the GoAway, then EOF. */
static void test_goaway_last_stream_flushes_before_closing(void **state)
{
    (void)state;
    static uint8_t big[200 * KiB];
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 4096);
    struct tep *t = peer_open(&r, 1);
    endpoint_established(&t->e);
    peer_frame(&r, YAMUX_WINDOW_UPDATE, YAMUX_FIN, 1, 0, NULL, 0);    /* the request was all */
    mux_conn_goaway(r.c);
    spin(&r);
    pattern(big, sizeof(big), 6);
    assert_int_equal(endpoint_write(&t->e, big, sizeof(big)), sizeof(big));  /* backs up: the peer is slow */
    endpoint_shutdown_write(&t->e);
    uint8_t buf[4];
    assert_int_equal(endpoint_read(&t->e, buf, sizeof(buf)), 0);
    tep_close(t);                                                     /* both finished: the last stream */
    for (int i = 0; i < 200 && !r.eof; i++) spin(&r);
    assert_int_equal(r.eof, 1);
    assert_int_equal(r.nclosed, 1);
    assert_int_equal(r.data_len[1], sizeof(big));
    assert_memory_equal(r.data[1], big, sizeof(big));
    assert_int_equal(count_frames(&r, YAMUX_WINDOW_UPDATE, 1, YAMUX_FIN), 1);
    assert_int_equal(count_frames(&r, YAMUX_GO_AWAY, 0, 0), 1);
    rig_free(&r);
}

/* What the peer can make us hold is bounded: a stream's buffer by the
 * window it was given (one byte more is a protocol error), and the send
 * buffer by MUX_TX_LIMIT (a peer that asks for pings and never reads the
 * answers is dropped). */
static void test_peer_cannot_grow_memory(void **state)
{
    (void)state;
    static uint8_t big[W];
    struct rig r;
    rig_init(&r, YAMUX_SERVER, 0, 0, 0);
    struct tep *t = peer_open(&r, 1);
    endpoint_established(&t->e);
    peer_data(&r, 0, 1, big, W);                        /* the whole window: fine */
    spin(&r);
    assert_int_equal(r.nclosed, 0);
    peer_data(&r, 0, 1, "x", 1);                        /* nothing read, no credit: over */
    spin(&r);
    assert_int_equal(r.nclosed, 1);
    assert_int_equal(r.frames[r.nframes - 1].type, YAMUX_GO_AWAY);
    assert_int_equal(r.frames[r.nframes - 1].length, YAMUX_GOAWAY_PROTO);
    rig_free(&r);

    rig_init(&r, YAMUX_SERVER, 0, 0, 4096);
    uint8_t pings[256 * YAMUX_HEADER_SIZE];
    for (int i = 0; i < 256; i++) {
        struct yamux_header h = { YAMUX_VERSION, YAMUX_PING, YAMUX_SYN, 0, (uint32_t)i };
        yamux_write_header(pings + i * YAMUX_HEADER_SIZE, &h);
    }
    size_t sent = 0;
    while (r.nclosed == 0 && sent < 16u * 1024 * KiB) {
        ssize_t n = send(r.fd, pings, sizeof(pings), MSG_NOSIGNAL);
        if (n > 0) sent += (size_t)n;
        if (n < (ssize_t)sizeof(pings)) {
            /* A partial send would split a header: finish it. */
            size_t at = n > 0 ? (size_t)n : 0;
            while (at % YAMUX_HEADER_SIZE) {
                ssize_t k = send(r.fd, pings + at, YAMUX_HEADER_SIZE - at % YAMUX_HEADER_SIZE, MSG_NOSIGNAL);
                if (k > 0) {
                    at += (size_t)k;
                    sent += (size_t)k;
                } else {
                    loop_run_once(r.l, 0);
                }
            }
            loop_run_once(r.l, 0);                      /* the peer never reads */
        }
    }
    assert_int_equal(r.nclosed, 1);
    assert_non_null(strstr(r.why, "send buffer"));
    rig_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_stream_data_credit_ack),
        cmocka_unit_test(test_peer_fin_then_clean_close),
        cmocka_unit_test(test_close_resets_unfinished),
        cmocka_unit_test(test_local_stream_ack_and_rst),
        cmocka_unit_test(test_window_zero_eagain_then_update),
        cmocka_unit_test(test_high_water_wakes_every_writer),
        cmocka_unit_test(test_high_water_queued_before_full),
        cmocka_unit_test(test_peer_closes_connection),
        cmocka_unit_test(test_protocol_error_goaway),
        cmocka_unit_test(test_ping_answered),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_goaway),
        cmocka_unit_test(test_max_streams),
        cmocka_unit_test(test_close_inside_dispatch),
        cmocka_unit_test(test_goaway_last_stream_flushes_before_closing),
        cmocka_unit_test(test_peer_cannot_grow_memory),
        cmocka_unit_test(test_fin_on_data_frame),
        cmocka_unit_test(test_close_mid_frame),
        cmocka_unit_test(test_closed_endpoint_is_inert),
        cmocka_unit_test(test_close_before_established_resets),
        cmocka_unit_test(test_syn_with_rst),
        cmocka_unit_test(test_shutdown_before_established_resets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
