/* mux_conn.c - see mux_conn.h. */
#include "relay/mux_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "net/sock.h"
#include "obs/log.h"
#include "relay/endpoint.h"

/* Streams stop writing while this much waits in the send buffer: enough to
 * keep a fast link busy, small enough that one flooding stream cannot
 * queue far ahead of the others. Control frames (acks, window updates,
 * pings, resets) are always queued; a peer that makes them pile up beyond
 * MUX_TX_LIMIT without reading is dropped. */
#define MUX_TX_HIGH  (256u * 1024u)
#define MUX_TX_LIMIT (4u * 1024u * 1024u)
#define MUX_READ_SIZE (64u * 1024u)
/* Socket reads per wakeup before yielding to other connections. */
#define MUX_READS_PER_WAKE 8
#define MUX_FIRST_MAX 512
/* A connection ending gracefully (go-away, no streams left) waits this long
 * at most for its send buffer to leave. */
#define MUX_LINGER_MS 10000u

static uint64_t next_conn_id = 1;   /* all workers, atomic */

struct mux_stream {
    struct mux_conn *conn;         /* NULL once the connection is gone */
    struct mux_stream *prev, *next;        /* the connection's streams */
    struct mux_stream *qprev, *qnext;      /* the dispatch queue */
    struct endpoint *ep;           /* the session's side; NULL before bind */
    uint32_t id;
    uint32_t want;                 /* LOOP_READ | LOOP_WRITE */
    uint8_t *rx;                   /* received, not yet read: rx[rx_off, rx_off + rx_len) */
    uint32_t rx_off, rx_len, rx_cap;
    uint64_t conn_id;              /* for the log, after the connection is gone */
    uint8_t queued;
    uint8_t local;                 /* we opened it */
    uint8_t remote_fin;            /* the peer sent FIN: EOF after rx */
    uint8_t peer_reset;            /* the peer sent RST (or we refused it: st_shutdown_write) */
    uint8_t conn_lost;             /* the connection died under it */
    uint8_t abort;                 /* endpoint reset(): close with RST */
    uint8_t closed;                /* the session closed it */
    uint8_t accepted;              /* peer-opened: endpoint_established() (ACK) done */
    uint32_t credit_held;          /* read before the ACK: advertised with it */
    /* Once the connection is gone there is no queue: a session that asks
     * for interest again is told of the error by this (zero-delay) timer. */
    struct loop_timer orphan_timer;
};

struct mux_conn {
    struct loop *loop;
    struct loop_io io;
    struct yamux_conn y;
    struct mux_conn_cfg cfg;
    const struct mux_conn_ops *ops;
    void *owner;
    uint64_t id;
    struct net_addr peer;
    uint8_t *tx;                   /* frames to write: tx[tx_off, tx_off + tx_len) */
    size_t tx_off, tx_len, tx_cap;
    uint8_t *rbuf;
    struct mux_stream *streams;
    unsigned nstreams;
    struct mux_stream *qhead, *qtail;
    unsigned nqueued;
    struct loop_timer dispatch_timer;      /* runs the queue soon, outside stream operations */
    struct loop_timer ka_timer;
    uint32_t ping_value;
    uint8_t ping_unanswered;
    uint8_t connecting;
    uint8_t busy;                  /* inside the socket callback: no dying, no flushing yet */
    uint8_t blocked;               /* a stream found the send buffer full */
    const char *failed;            /* set once: the connection is to die */
    const char *closing;           /* no streams left: dies once tx has left (conn_finish) */
};

/* ---- send buffer ---- */

static void conn_fail(struct mux_conn *c, const char *why);
static void conn_finish(struct mux_conn *c, const char *why);

static int tx_append(struct mux_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
    size_t need = alen + blen;
    if (c->tx_len + need > MUX_TX_LIMIT) {
        conn_fail(c, "peer does not read (send buffer over its limit)");
        return -1;
    }
    if (c->tx_off + c->tx_len + need > c->tx_cap) {
        if (c->tx_off) {
            memmove(c->tx, c->tx + c->tx_off, c->tx_len);
            c->tx_off = 0;
        }
        if (c->tx_len + need > c->tx_cap) {
            size_t cap = c->tx_cap ? c->tx_cap : 16384;
            while (cap < c->tx_len + need) cap *= 2;
            uint8_t *p = realloc(c->tx, cap);
            if (!p) {
                conn_fail(c, "out of memory");
                return -1;
            }
            c->tx = p;
            c->tx_cap = cap;
        }
    }
    memcpy(c->tx + c->tx_off + c->tx_len, a, alen);
    if (blen) memcpy(c->tx + c->tx_off + c->tx_len + alen, b, blen);
    c->tx_len += need;
    return 0;
}

static int tx_frame(struct mux_conn *c, const uint8_t hdr[YAMUX_HEADER_SIZE])
{
    return tx_append(c, hdr, YAMUX_HEADER_SIZE, NULL, 0);
}

static void queue_stream(struct mux_stream *st);

/* Streams that found the buffer full may write again. */
static void wake_blocked(struct mux_conn *c)
{
    if (!c->blocked || c->tx_len >= MUX_TX_HIGH / 2) return;
    c->blocked = 0;
    for (struct mux_stream *st = c->streams; st; st = st->next)
        if (st->want & LOOP_WRITE) queue_stream(st);
}

/* Writes what the socket takes. */
static void flush(struct mux_conn *c)
{
    if (c->failed || c->connecting) return;
    while (c->tx_len) {
        ssize_t n = send(c->io.fd, c->tx + c->tx_off, c->tx_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) conn_fail(c, "write error");
            break;
        }
        c->tx_off += (size_t)n;
        c->tx_len -= (size_t)n;
    }
    if (!c->tx_len) c->tx_off = 0;
    if (c->tx_cap > 65536 && !c->tx_len) {      /* a burst is over: give the memory back */
        free(c->tx);
        c->tx = NULL;
        c->tx_cap = 0;
    }
    if (c->closing && !c->tx_len) conn_fail(c, c->closing);
    wake_blocked(c);
}

static void update_io(struct mux_conn *c)
{
    if (c->io.fd < 0 || c->failed) return;
    uint32_t want = c->connecting ? LOOP_WRITE : LOOP_READ | (c->tx_len ? LOOP_WRITE : 0);
    loop_io_want(c->loop, &c->io, want);
}

/* After a stream operation queued frames: out now, unless the socket
 * callback is running (it flushes once at its end). */
static void kick(struct mux_conn *c)
{
    if (c->busy) return;
    flush(c);
    update_io(c);
}

/* ---- readiness ---- */

static uint32_t stream_state(const struct mux_stream *st)
{
    return st->conn && st->id ? yamux_stream_state(&st->conn->y, st->id) : 0;
}

/* A stream is gone when the peer reset it or the connection died. */
static int stream_broken(const struct mux_stream *st) { return st->peer_reset || st->conn_lost; }

static int stream_readable(const struct mux_stream *st)
{
    return st->rx_len || st->remote_fin || stream_broken(st);
}

static int stream_writable(const struct mux_stream *st)
{
    if (stream_broken(st)) return 1;
    unsigned s = stream_state(st);
    if (!s || (s & YAMUX_ST_LOCAL_FIN)) return 0;
    if (st->local && !(s & YAMUX_ST_ESTAB)) return 0;     /* not acknowledged yet */
    return yamux_send_window(&st->conn->y, st->id) > 0 && st->conn->tx_len < MUX_TX_HIGH;
}

/* What the stream's session is to hear of now. A stream that wants to
 * write while the send buffer is full marks the connection blocked, so
 * that the buffer draining wakes it: whoever filled the buffer may never
 * have been refused a write itself. */
static uint32_t stream_events(struct mux_stream *st)
{
    uint32_t ev = 0;
    if ((st->want & LOOP_READ) && stream_readable(st)) ev |= EPOLLIN;
    if (st->want & LOOP_WRITE) {
        if (stream_writable(st)) ev |= EPOLLOUT;
        else if (st->conn && st->conn->tx_len >= MUX_TX_HIGH) st->conn->blocked = 1;
    }
    if (stream_broken(st)) ev |= EPOLLERR;
    return ev;
}

static void unqueue_stream(struct mux_stream *st)
{
    struct mux_conn *c = st->conn;
    if (!st->queued || !c) return;
    if (st->qprev) st->qprev->qnext = st->qnext;
    else c->qhead = st->qnext;
    if (st->qnext) st->qnext->qprev = st->qprev;
    else c->qtail = st->qprev;
    st->qprev = st->qnext = NULL;
    st->queued = 0;
    c->nqueued--;
}

/* The stream's session will be told of what holds for it now. */
static void queue_stream(struct mux_stream *st)
{
    struct mux_conn *c = st->conn;
    if (st->queued || !c || st->closed || !st->ep) return;
    st->queued = 1;
    st->qnext = NULL;
    st->qprev = c->qtail;
    if (c->qtail) c->qtail->qnext = st;
    else c->qhead = st;
    c->qtail = st;
    c->nqueued++;
    if (!c->busy) loop_timer_arm_in(c->loop, &c->dispatch_timer, 0);
}

/* Tells the queued streams' sessions. Only those queued when it started:
 * a session that asks again is served on the next run. */
static void dispatch(struct mux_conn *c)
{
    for (unsigned n = c->nqueued; n && c->qhead && !c->failed; n--) {
        struct mux_stream *st = c->qhead;
        unqueue_stream(st);
        uint32_t ev = stream_events(st);
        if (ev) st->ep->ready(st->ep->owner, ev);
    }
}

/* ---- receiving ---- */

static int rx_append(struct mux_stream *st, const uint8_t *p, size_t n)
{
    if (st->rx_off + st->rx_len + n > st->rx_cap) {
        if (st->rx_off) {
            memmove(st->rx, st->rx + st->rx_off, st->rx_len);
            st->rx_off = 0;
        }
        if (st->rx_len + n > st->rx_cap) {
            uint32_t cap = st->rx_cap ? st->rx_cap : 4096;
            while (cap < st->rx_len + n) cap *= 2;
            uint8_t *q = realloc(st->rx, cap);
            if (!q) return -1;
            st->rx = q;
            st->rx_cap = cap;
        }
    }
    memcpy(st->rx + st->rx_off + st->rx_len, p, n);
    st->rx_len += (uint32_t)n;
    return 0;
}

static void orphan_cb(struct loop *l, struct loop_timer *t)
{
    struct mux_stream *st = t->owner;
    (void)l;
    if (st->ep && !st->closed) st->ep->ready(st->ep->owner, EPOLLIN | EPOLLOUT | EPOLLERR);
}

static struct mux_stream *stream_new(struct mux_conn *c, uint32_t id, int local)
{
    struct mux_stream *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    loop_timer_init(&st->orphan_timer, orphan_cb, st);
    st->conn = c;
    st->id = id;
    st->local = (uint8_t)local;
    st->conn_id = c->id;
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    c->nstreams++;
    (void)yamux_set_user(&c->y, id, st);
    return st;
}

static void stream_unlink(struct mux_stream *st)
{
    struct mux_conn *c = st->conn;
    if (!c) return;
    unqueue_stream(st);
    if (st->prev) st->prev->next = st->next;
    else c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    st->prev = st->next = NULL;
    c->nstreams--;
}

static void on_opened(struct mux_conn *c, uint32_t id)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    /* A SYN that carried RST: opened and forgotten in one frame. A session
     * for it would never hear of the reset (and not count against
     * max_streams); there is nothing to accept or answer. */
    if (!yamux_stream_state(&c->y, id)) return;
    struct mux_stream *st = c->ops->opened && !c->closing ? stream_new(c, id, 0) : NULL;
    if (st && c->ops->opened(c->owner, c, st) == 0) return;
    if (st) {
        (void)yamux_set_user(&c->y, id, NULL);    /* the rest of its SYN frame */
        stream_unlink(st);
        free(st);
    }
    if (yamux_build_rst(&c->y, id, hdr) == YAMUX_OK) (void)tx_frame(c, hdr);
}

static void on_event(struct mux_conn *c, const struct yamux_event *ev)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    struct mux_stream *st = ev->user;
    switch (ev->type) {
    case YAMUX_EV_OPENED:
        on_opened(c, ev->id);
        break;
    case YAMUX_EV_REFUSED:
        if (log_enabled(LOG_DEBUG))
            log_debug("listener=%s mux=%llu stream=%u refused: %u streams open", c->cfg.listener,
                      (unsigned long long)c->id, ev->id, c->nstreams);
        if (yamux_build_rst(&c->y, ev->id, hdr) == YAMUX_OK) (void)tx_frame(c, hdr);
        break;
    case YAMUX_EV_DATA:
        if (!st) break;
        if (rx_append(st, ev->data, ev->len) < 0) {
            conn_fail(c, "out of memory");
            break;
        }
        queue_stream(st);
        break;
    case YAMUX_EV_ACKED:
    case YAMUX_EV_WINDOW:
        if (st) queue_stream(st);
        break;
    case YAMUX_EV_FIN:
        if (!st) break;
        st->remote_fin = 1;
        queue_stream(st);
        break;
    case YAMUX_EV_RST:
        if (!st) break;
        st->peer_reset = 1;
        /* As TCP's RST: what was not read yet is dropped, so a peer that
         * fills streams and resets them cannot make us hold it. */
        free(st->rx);
        st->rx = NULL;
        st->rx_off = st->rx_len = st->rx_cap = 0;
        queue_stream(st);
        break;
    case YAMUX_EV_PING:
        if (!ev->ack) {
            yamux_build_ping(hdr, ev->value, 1);
            (void)tx_frame(c, hdr);
        } else if (ev->value == c->ping_value) {
            c->ping_unanswered = 0;
        }
        break;
    case YAMUX_EV_GOAWAY:
        if (c->nstreams == 0) conn_finish(c, "go-away from the peer");
        break;
    case YAMUX_EV_ERROR:
        if (yamux_build_goaway(&c->y, YAMUX_GOAWAY_PROTO, hdr) == YAMUX_OK) (void)tx_frame(c, hdr);
        flush(c);   /* best effort: the peer learns why */
        conn_fail(c, ev->reason ? ev->reason : "protocol error");
        break;
    case YAMUX_EV_NONE:
        break;
    }
}

/* Until the codec says NONE, not until the bytes are used: a frame's last
 * events (the FIN of a Data frame, after its payload) need no more bytes,
 * and would otherwise wait for the peer's next frame. */
static void feed(struct mux_conn *c, const uint8_t *p, size_t n)
{
    while (!c->failed) {
        struct yamux_event ev;
        size_t used;
        enum yamux_ev_type t = yamux_feed(&c->y, p, n, &ev, &used);
        p += used;
        n -= used;
        if (t == YAMUX_EV_NONE) {
            if (n == 0 || used == 0) break;
            continue;
        }
        on_event(c, &ev);
        if (t == YAMUX_EV_ERROR) break;
    }
}

/* ---- the connection's life ---- */

static void conn_die(struct mux_conn *c)
{
    const char *why = c->failed;
    if (log_enabled(LOG_INFO)) {
        char a[NET_ADDR_STRLEN];
        log_info("listener=%s mux=%llu peer=%s closed: %s (%u stream%s cut)", c->cfg.listener,
                 (unsigned long long)c->id, net_addr_format(&c->peer, a, sizeof(a)), why, c->nstreams,
                 c->nstreams == 1 ? "" : "s");
    }
    loop_timer_cancel(c->loop, &c->dispatch_timer);
    loop_timer_cancel(c->loop, &c->ka_timer);
    if (c->io.fd >= 0) loop_io_close(c->loop, &c->io);
    /* Every stream's session hears of it now; the streams stay theirs
     * until they close them. */
    while (c->streams) {
        struct mux_stream *st = c->streams;
        stream_unlink(st);
        st->conn = NULL;
        st->conn_lost = 1;
        if (st->ep && !st->closed) st->ep->ready(st->ep->owner, EPOLLIN | EPOLLOUT | EPOLLERR);
    }
    yamux_conn_free(&c->y);
    free(c->tx);
    c->tx = NULL;
    free(c->rbuf);
    c->rbuf = NULL;
    c->ops->closed(c->owner, c, why);
    loop_defer_free(c->loop, c, free);
}

/* Marks c to die as soon as no stream operation is under way. */
static void conn_fail(struct mux_conn *c, const char *why)
{
    if (c->failed) return;
    c->failed = why;
    if (!c->busy) loop_timer_arm_in(c->loop, &c->dispatch_timer, 0);
}

/* The graceful end (go-away, no streams left): what the last streams
 * wrote, their FINs and resets, and the GoAway go out first. The peer is
 * read meanwhile (no RST for unread input), for MUX_LINGER_MS at most. */
static void conn_finish(struct mux_conn *c, const char *why)
{
    if (c->failed || c->closing) return;
    if (!c->tx_len || c->connecting) {
        conn_fail(c, why);
        return;
    }
    c->closing = why;
    loop_timer_arm_in(c->loop, &c->ka_timer, MUX_LINGER_MS);
}

void mux_conn_close(struct mux_conn *c, const char *why)
{
    if (!c->failed) c->failed = why;
    conn_die(c);
}

static void finish_connect(struct mux_conn *c, uint32_t events)
{
    int err = events & (EPOLLERR | EPOLLHUP) ? sock_error(c->io.fd) : 0;
    c->connecting = 0;
    if (err) {
        c->failed = "connect failed";
        c->ops->up(c->owner, c, err);
        conn_die(c);
        return;
    }
    /* The timer watched the dial; from now on it paces the pings. */
    if (c->cfg.keepalive_ms) loop_timer_arm_in(c->loop, &c->ka_timer, c->cfg.keepalive_ms);
    else loop_timer_cancel(c->loop, &c->ka_timer);
    c->ops->up(c->owner, c, 0);
}

/* The end of a socket callback or a timer run (busy): tell the queued
 * streams, write what they made, then die or wait for more. */
static void settle(struct mux_conn *c)
{
    dispatch(c);
    c->busy = 0;
    if (!c->failed) flush(c);
    if (c->failed) {
        conn_die(c);
        return;
    }
    if (c->qhead) loop_timer_arm_in(c->loop, &c->dispatch_timer, 0);
    update_io(c);
}

static void conn_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct mux_conn *c = io->owner;
    (void)l;
    if (c->connecting) {
        finish_connect(c, events);
        if (c->failed) return;
    }
    c->busy = 1;
    if (events & EPOLLOUT) flush(c);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (int i = 0; i < MUX_READS_PER_WAKE && !c->failed; i++) {
            ssize_t n = recv(c->io.fd, c->rbuf, MUX_READ_SIZE, 0);
            if (n > 0) {
                feed(c, c->rbuf, (size_t)n);
                if ((size_t)n < MUX_READ_SIZE) break;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
            conn_fail(c, n == 0 ? "closed by the peer" : "read error");
        }
    }
    settle(c);
}

static void dispatch_timer_cb(struct loop *l, struct loop_timer *t)
{
    struct mux_conn *c = t->owner;
    (void)l;
    if (c->failed) {
        conn_die(c);
        return;
    }
    c->busy = 1;
    settle(c);
}

/* A ping per interval; one still unanswered when the next is due means
 * the peer (or the path to it) is gone. */
static void keepalive_cb(struct loop *l, struct loop_timer *t)
{
    struct mux_conn *c = t->owner;
    uint8_t hdr[YAMUX_HEADER_SIZE];
    if (c->closing) {
        mux_conn_close(c, "closing: the peer does not read what is left");
        return;
    }
    if (c->ping_unanswered) {
        mux_conn_close(c, "keepalive: no answer to a ping");
        return;
    }
    if (c->connecting) {
        c->ops->up(c->owner, c, ETIMEDOUT);
        mux_conn_close(c, "connect timed out");
        return;
    }
    if (!c->connecting) {
        c->ping_value++;
        c->ping_unanswered = 1;
        yamux_build_ping(hdr, c->ping_value, 0);
        if (tx_frame(c, hdr) == 0) kick(c);
    }
    if (c->failed) {
        conn_die(c);
        return;
    }
    loop_timer_arm_in(l, t, c->cfg.keepalive_ms);
}

struct mux_conn *mux_conn_new(struct loop *l, int fd, int connecting, const struct net_addr *peer,
                              const struct mux_conn_cfg *cfg, const struct mux_conn_ops *ops, void *owner)
{
    struct mux_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->rbuf = malloc(MUX_READ_SIZE)) || yamux_conn_init(&c->y, cfg->role, cfg->max_streams) < 0) {
        if (c) free(c->rbuf);
        free(c);
        close(fd);
        return NULL;
    }
    c->loop = l;
    c->cfg = *cfg;
    c->ops = ops;
    c->owner = owner;
    c->peer = *peer;
    c->connecting = (uint8_t)connecting;
    c->id = __atomic_fetch_add(&next_conn_id, 1, __ATOMIC_RELAXED);
    c->io.fd = -1;
    loop_timer_init(&c->dispatch_timer, dispatch_timer_cb, c);
    loop_timer_init(&c->ka_timer, keepalive_cb, c);
    if (loop_io_add(l, &c->io, fd, connecting ? LOOP_WRITE : LOOP_READ, conn_io_cb, c) < 0) {
        close(fd);
        yamux_conn_free(&c->y);
        free(c->rbuf);
        free(c);
        return NULL;
    }
    if (connecting && cfg->dial_timeout_ms) loop_timer_arm_in(l, &c->ka_timer, cfg->dial_timeout_ms);
    else if (!connecting && cfg->keepalive_ms) loop_timer_arm_in(l, &c->ka_timer, cfg->keepalive_ms);
    return c;
}

void mux_conn_goaway(struct mux_conn *c)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    if (c->failed || c->y.local_goaway) return;
    if (yamux_build_goaway(&c->y, YAMUX_GOAWAY_NORMAL, hdr) == YAMUX_OK && tx_frame(c, hdr) == 0) kick(c);
    if (c->nstreams == 0) conn_finish(c, "go-away sent, no streams left");
}

int mux_conn_usable(const struct mux_conn *c)
{
    return !c->failed && !c->connecting && !c->y.dead && !c->y.local_goaway && !c->y.remote_goaway &&
           c->y.nstreams < c->y.max_streams;
}

unsigned mux_conn_streams(const struct mux_conn *c) { return c->nstreams; }

int mux_conn_full(const struct mux_conn *c)
{
    return !c->failed && !c->connecting && !c->y.dead && !c->y.local_goaway && !c->y.remote_goaway &&
           c->y.nstreams >= c->y.max_streams;
}
uint64_t mux_conn_id(const struct mux_conn *c) { return c->id; }
const struct net_addr *mux_conn_peer(const struct mux_conn *c) { return &c->peer; }
uint32_t mux_stream_id(const struct mux_stream *st) { return st->id; }

/* ---- the stream endpoint ---- */

static struct mux_stream *ep_stream(const struct endpoint *e) { return e->ctx; }

/* Why a stream can do nothing more: errno for read and write. */
static int broken_errno(const struct mux_stream *st) { return st->conn_lost ? ECONNABORTED : ECONNRESET; }

static ssize_t st_read(struct endpoint *e, void *p, size_t n)
{
    struct mux_stream *st = ep_stream(e);
    uint8_t hdr[YAMUX_HEADER_SIZE];
    if (st->rx_len == 0) {
        if (stream_broken(st)) {
            errno = broken_errno(st);
            return -1;
        }
        if (st->remote_fin) return 0;
        errno = EAGAIN;
        return -1;
    }
    size_t k = n < st->rx_len ? n : st->rx_len;
    memcpy(p, st->rx + st->rx_off, k);
    st->rx_off += (uint32_t)k;
    st->rx_len -= (uint32_t)k;
    if (st->rx_len == 0) {              /* an idle stream holds no buffer */
        free(st->rx);
        st->rx = NULL;
        st->rx_off = st->rx_cap = 0;
    }
    /* What the session took is credit for the peer (sent in batches). A
     * stream the peer opened is not acknowledged before its session has
     * connected (a window update would carry the ACK): held till then. */
    struct mux_conn *c = st->conn;
    if (!st->local && !st->accepted) st->credit_held += (uint32_t)k;
    else if (c && yamux_build_window_update(&c->y, st->id, (uint32_t)k, hdr) == YAMUX_OK && tx_frame(c, hdr) == 0)
        kick(c);
    return (ssize_t)k;
}

static ssize_t st_write(struct endpoint *e, const void *p, size_t n)
{
    struct mux_stream *st = ep_stream(e);
    struct mux_conn *c = st->conn;
    uint8_t hdr[YAMUX_HEADER_SIZE];
    uint32_t take = 0;
    if (stream_broken(st) || !c || c->failed) {
        errno = c && !c->failed ? broken_errno(st) : ECONNABORTED;
        return -1;
    }
    if (c->tx_len >= MUX_TX_HIGH) {
        c->blocked = 1;
        errno = EAGAIN;
        return -1;
    }
    int rc = yamux_build_data(&c->y, st->id, n, hdr, &take);
    if (rc == YAMUX_IDLE) {             /* window closed: a WINDOW event wakes it */
        errno = EAGAIN;
        return -1;
    }
    if (rc != YAMUX_OK) {
        errno = EPIPE;
        return -1;
    }
    if (tx_append(c, hdr, sizeof(hdr), p, take) < 0) {
        errno = ENOMEM;
        return -1;
    }
    kick(c);
    return take;
}

static void st_shutdown_write(struct endpoint *e)
{
    struct mux_stream *st = ep_stream(e);
    struct mux_conn *c = st->conn;
    uint8_t hdr[YAMUX_HEADER_SIZE];
    if (!c || stream_broken(st)) return;
    if (stream_state(st) & YAMUX_ST_ACK_OWED) {
        /* Never accepted, not even by a reply carrying the ACK: a FIN would
         * carry it, a success. The session gives up on it (a refused
         * handshake lingers): a reset, and as nothing more will come, the
         * stream reads as reset too. */
        if (yamux_build_rst(&c->y, st->id, hdr) == YAMUX_OK && tx_frame(c, hdr) == 0) kick(c);
        st->peer_reset = 1;
        queue_stream(st);
        return;
    }
    if (yamux_build_fin(&c->y, st->id, hdr) == YAMUX_OK && tx_frame(c, hdr) == 0) kick(c);
}

static void st_reset(struct endpoint *e) { ep_stream(e)->abort = 1; }

static int st_fd(const struct endpoint *e)
{
    (void)e;
    return -1;
}

static void st_want(struct endpoint *e, uint32_t want)
{
    struct mux_stream *st = ep_stream(e);
    st->want = want;
    if (!st->conn) {
        if (want && !st->closed) loop_timer_arm_in(e->loop, &st->orphan_timer, 0);
        return;
    }
    /* Level-triggered: what holds already is told (soon), as epoll would. */
    if ((stream_events(st) & ~(uint32_t)EPOLLERR) || (stream_broken(st) && want)) queue_stream(st);
}

static uint32_t st_wanted(const struct endpoint *e) { return ep_stream(e)->want; }

static int st_is_open(const struct endpoint *e) { return !ep_stream(e)->closed; }

/* What a stream endpoint becomes when closed: the stream is freed after
 * this batch, but its session may still ask (is_open, close again) later,
 * as one that a stage ended closes its upstream and lives on, flushing. */
static ssize_t closed_io(struct endpoint *e, void *p, size_t n)
{
    (void)e;
    (void)p;
    (void)n;
    errno = EBADF;
    return -1;
}

static ssize_t closed_write(struct endpoint *e, const void *p, size_t n) { return closed_io(e, (void *)p, n); }
static void closed_void(struct endpoint *e) { (void)e; }
static void closed_want(struct endpoint *e, uint32_t want) { (void)e; (void)want; }
static uint32_t closed_wanted(const struct endpoint *e) { (void)e; return 0; }
static int closed_is_open(const struct endpoint *e) { (void)e; return 0; }
static int closed_fd(const struct endpoint *e) { (void)e; return -1; }
static void closed_close(struct endpoint *e, int abort) { (void)e; (void)abort; }

static const struct endpoint_ops closed_ops = {
    .read = closed_io, .write = closed_write, .shutdown_write = closed_void, .reset = closed_void,
    .fd = closed_fd, .want = closed_want, .wanted = closed_wanted, .is_open = closed_is_open,
    .close = closed_close,
};

/* A clean close when both sides had finished (or only ours is left to
 * finish); otherwise a reset, as closing a socket with unread data is. */
static void st_close(struct endpoint *e, int abort)
{
    struct mux_stream *st = ep_stream(e);
    struct mux_conn *c = st->conn;
    uint8_t hdr[YAMUX_HEADER_SIZE];
    if (st->closed) return;
    st->closed = 1;
    if (c) {
        /* Still known to the codec: the peer has not both finished and
         * been answered, nor reset it. A FIN completes a stream whose peer
         * finished and whose bytes were all read (and forgets it); else
         * RST, so that nothing more is sent to a stream nobody reads. A
         * stream still owed its ACK was never accepted (its upstream
         * failed): RST, or the FIN would carry the ACK, a success. */
        unsigned s = stream_state(st);
        int rc = YAMUX_IDLE;
        (void)yamux_set_user(&c->y, st->id, NULL);   /* a frame still arriving: skipped */
        if (s && !(s & YAMUX_ST_ACK_OWED) && !abort && !st->abort && st->remote_fin && !st->rx_len)
            rc = yamux_build_fin(&c->y, st->id, hdr);
        else if (s) rc = yamux_build_rst(&c->y, st->id, hdr);
        if (rc == YAMUX_OK) (void)tx_frame(c, hdr);
        stream_unlink(st);
        if (c->y.local_goaway && c->nstreams == 0) conn_finish(c, "go-away sent, last stream closed");
        else if (c->y.remote_goaway && c->nstreams == 0) conn_finish(c, "go-away from the peer, last stream closed");
        kick(c);
    }
    free(st->rx);
    st->rx = NULL;
    loop_timer_cancel(e->loop, &st->orphan_timer);
    loop_defer_free(e->loop, st, free);
    st->ep = NULL;
    e->ops = &closed_ops;
    e->ctx = NULL;
}

static void st_established(struct endpoint *e)
{
    struct mux_stream *st = ep_stream(e);
    struct mux_conn *c = st->conn;
    uint8_t hdr[YAMUX_HEADER_SIZE];
    if (st->local || st->accepted) return;
    st->accepted = 1;
    /* The ACK the peer's SYN is owed, with what was read before it. */
    if (c && yamux_build_window_update(&c->y, st->id, st->credit_held, hdr) == YAMUX_OK && tx_frame(c, hdr) == 0)
        kick(c);
    st->credit_held = 0;
}

static void st_describe(const struct endpoint *e, char *out, size_t outlen)
{
    const struct mux_stream *st = ep_stream(e);
    snprintf(out, outlen, " mux=%llu stream=%u", (unsigned long long)st->conn_id, st->id);
}

static const struct endpoint_ops stream_ops = {
    .read = st_read, .write = st_write, .shutdown_write = st_shutdown_write, .reset = st_reset, .fd = st_fd,
    .want = st_want, .wanted = st_wanted, .is_open = st_is_open, .close = st_close,
    .established = st_established, .describe = st_describe,
};

int mux_endpoint_error(const struct endpoint *e)
{
    const struct mux_stream *st = e->ops == &stream_ops ? e->ctx : NULL;
    return st && stream_broken(st) ? broken_errno(st) : 0;
}

void mux_stream_bind(struct mux_stream *st, struct endpoint *e)
{
    st->ep = e;
    e->ops = &stream_ops;
    e->ctx = st;
    e->loop = st->conn->loop;
}

int mux_conn_open_stream(struct mux_conn *c, struct endpoint *e, const void *first, size_t len)
{
    uint8_t syn[YAMUX_HEADER_SIZE], hdr[YAMUX_HEADER_SIZE];
    uint32_t id, take = 0;
    if (len > MUX_FIRST_MAX || !mux_conn_usable(c)) {
        errno = c->y.nstreams >= c->y.max_streams ? EAGAIN : EPIPE;
        return -1;
    }
    int rc = yamux_open_stream(&c->y, &id, syn);
    if (rc != YAMUX_OK) {
        errno = rc == YAMUX_E_FULL ? EAGAIN : EPIPE;
        return -1;
    }
    struct mux_stream *st = stream_new(c, id, 1);
    if (!st || tx_frame(c, syn) < 0 ||
        (len && (yamux_build_data(&c->y, id, len, hdr, &take) != YAMUX_OK || take != len ||
                 tx_append(c, hdr, sizeof(hdr), first, len) < 0))) {
        if (st) stream_unlink(st);
        free(st);
        (void)yamux_build_rst(&c->y, id, syn);
        errno = ENOMEM;
        return -1;
    }
    mux_stream_bind(st, e);
    kick(c);
    return 0;
}
