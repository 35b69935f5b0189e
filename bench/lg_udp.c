/* loadgen UDP scenario: datagram round trips to a UDP echo server, straight
 * (the default --mode, reported as "direct") or through SOCKS5 UDP
 * ASSOCIATE (--mode socks5).
 *
 * An association is a TCP control connection to the proxy: greeting (no
 * authentication), UDP ASSOCIATE for 0.0.0.0:0, and the reply's
 * BND.ADDR:BND.PORT, the relay address (the proxy's own TCP address when
 * BND.ADDR is 0.0.0.0 or ::). A UDP socket connected to the relay sends
 * each datagram with the RFC 1928 header (RSV RSV FRAG=0 ATYP DST.ADDR
 * DST.PORT DATA) for -d, and strips the same header off the replies.
 *
 * One datagram must come back before an association counts as ready (the
 * proxy's path works and whatever it sets up on the first datagram is
 * done). The measured run keeps --window datagrams outstanding on each
 * association: a reply frees its slot and sends the next one; a datagram
 * unanswered for --loss-timeout is counted lost and its slot reused, so
 * loss never stalls an association. After -D seconds nothing new is sent
 * and the outstanding datagrams get --loss-timeout to come back; those
 * that do not are lost too, so lost / sent is exact.
 *
 * Every datagram carries a tag (thread and association id, sequence
 * number, slot) in front of a fixed pseudo-random filler; a reply whose id
 * is not the association's or whose filler differs is a mismatch, one whose
 * slot was already given up (timed out) is late. Memory is bounded: the
 * slots are allocated once, one transmit and one receive buffer per
 * thread. */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define TICK_NS     (10 * 1000000ull)   /* timeout scan period */
#define RX_ROUNDS   64                   /* datagrams read per event */
#define TAG_LEN     10                   /* id (4), seq (4), slot (2) */
#define HDR_MAX     22                   /* SOCKS5 UDP header, IPv6 target */
#define SOCK_BUF    (4 * 1024 * 1024)    /* asked for; the kernel caps it */

enum ustate { US_FREE, US_CONNECTING, US_GREET, US_REQ, US_PRIME, US_ACTIVE, US_DEAD };

struct uslot {
    uint64_t t_sent;
    uint32_t seq;
    uint8_t used;
    uint8_t counted;         /* sent during the measured window */
};

struct uassoc {
    int tfd, ufd;            /* control connection (socks5), UDP socket */
    uint32_t gen;
    uint32_t seq;            /* datagrams sent */
    uint8_t st;
    uint16_t have, need;     /* bytes received toward the SOCKS reply */
    uint64_t t0;             /* start of the current setup step */
    int nfree;
    uint16_t *freel;         /* free slot indexes */
    struct uslot *slot;      /* --window slots */
    uint8_t in[24];          /* SOCKS5 reply: 4 + 16 + 2 at most */
};

struct uw {
    struct lg_worker *w;
    const struct lg_opts *o;
    struct lg_stats *st;
    int ep, n, win, socks;
    struct uassoc *a;
    struct uslot *slots;
    uint16_t *frees;
    uint8_t *tx, *rx;        /* header + datagram, one each per thread */
    size_t hdr_len;
    uint64_t until, loss_ns, tmo_ns;
    uint64_t win_end;        /* replies after this are not in the rate */
    int measuring;           /* datagrams sent now are counted */
    int sending;             /* 0 once the window is over (drain) */
    int started, inflight;   /* setup phase accounting */
};

/* ---------- plumbing ---------- */

static uint64_t ev_data(const struct uassoc *a, int idx, int udp)
{
    return ((uint64_t)a->gen << 32) | ((uint64_t)idx << 1) | (uint64_t)udp;
}

static void set_bufs(int fd)
{
    int v = SOCK_BUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

/* Closes both sockets. Outstanding datagrams of the measured window will
 * never be answered now: they count as lost. */
static void ua_close(struct uw *w, struct uassoc *a)
{
    for (int s = 0; s < w->win; s++) {
        if (a->slot[s].used && a->slot[s].counted)
            w->st->lost++;
        a->slot[s].used = 0;
    }
    a->nfree = w->win;
    for (int s = 0; s < w->win; s++)
        a->freel[s] = (uint16_t)s;
    if (a->tfd >= 0)
        close(a->tfd);
    if (a->ufd >= 0)
        close(a->ufd);
    a->tfd = a->ufd = -1;
    a->gen++;
}

static void ua_fail(struct uw *w, struct uassoc *a, enum lg_err e)
{
    int in_setup = a->st != US_ACTIVE;
    w->st->err[e]++;
    ua_close(w, a);
    a->st = US_DEAD;
    if (in_setup && w->inflight > 0)
        w->inflight--;
}

/* The control messages are a few bytes on a fresh socket: all or fail. */
static int tcp_send(struct uw *w, struct uassoc *a, const uint8_t *b, size_t len)
{
    ssize_t k = send(a->tfd, b, len, MSG_NOSIGNAL);
    if (k != (ssize_t)len) {
        ua_fail(w, a, ERR_IO);
        return -1;
    }
    return 0;
}

static void tcp_interest(struct uw *w, struct uassoc *a, int idx, uint32_t ev)
{
    struct epoll_event e = { .events = ev };
    e.data.u64 = ev_data(a, idx, 0);
    epoll_ctl(w->ep, EPOLL_CTL_MOD, a->tfd, &e);
}

/* ---------- datagrams ---------- */

static uint32_t ua_id(const struct uw *w, int idx)
{
    return (uint32_t)(w->w->idx << 20) + (uint32_t)idx;
}

/* Sends one datagram in a free slot. Returns 0, or -1 when the socket
 * would block or failed (the slot stays free; the tick retries). */
static int ua_send(struct uw *w, struct uassoc *a, int idx)
{
    if (a->nfree == 0)
        return -1;
    uint16_t s = a->freel[a->nfree - 1];
    uint32_t id = ua_id(w, idx), seq = ++a->seq;
    uint8_t *tag = w->tx + w->hdr_len;
    memcpy(tag, &id, 4);
    memcpy(tag + 4, &seq, 4);
    memcpy(tag + 8, &s, 2);
    ssize_t k = send(a->ufd, w->tx, w->hdr_len + (size_t)w->o->size, MSG_NOSIGNAL);
    if (k < 0) {
        if (errno != EAGAIN && errno != ENOBUFS)
            w->st->err[ERR_IO]++;    /* e.g. ECONNREFUSED from an earlier ICMP */
        return -1;
    }
    a->nfree--;
    struct uslot *sl = &a->slot[s];
    sl->used = 1;
    sl->seq = seq;
    sl->t_sent = now_ns();
    sl->counted = (uint8_t)w->measuring;
    if (sl->counted)
        w->st->sent++;
    return 0;
}

/* Keeps the window full (one datagram while priming). */
static void ua_fill(struct uw *w, struct uassoc *a, int idx)
{
    if (a->st == US_PRIME) {
        if (a->nfree == w->win)
            ua_send(w, a, idx);
        return;
    }
    while (a->st == US_ACTIVE && w->sending && a->nfree > 0)
        if (ua_send(w, a, idx) < 0)
            break;
}

static void slot_free(struct uassoc *a, uint16_t s)
{
    a->slot[s].used = 0;
    a->freel[a->nfree++] = s;
}

/* One reply datagram of k bytes in w->rx. */
static void ua_reply(struct uw *w, struct uassoc *a, int idx, size_t k)
{
    size_t off = 0;
    if (w->socks) {   /* RSV RSV FRAG ATYP DST.ADDR DST.PORT */
        const uint8_t *h = w->rx;
        if (k < 4 || h[2] != 0 || (h[3] != 1 && h[3] != 3 && h[3] != 4)) {
            w->st->err[ERR_MISMATCH]++;
            return;
        }
        off = 4 + (h[3] == 1 ? 4 : h[3] == 4 ? 16 : 1 + (size_t)(k > 4 ? h[4] : 0)) + 2;
    }
    const uint8_t *d = w->rx + off;
    uint32_t id, seq;
    uint16_t s;
    if (k < off || k - off != (size_t)w->o->size) {
        w->st->err[ERR_MISMATCH]++;
        return;
    }
    memcpy(&id, d, 4);
    memcpy(&seq, d + 4, 4);
    memcpy(&s, d + 8, 2);
    if (id != ua_id(w, idx) || s >= w->win ||
        memcmp(d + TAG_LEN, w->tx + w->hdr_len + TAG_LEN,
               (size_t)w->o->size - TAG_LEN) != 0) {
        w->st->err[ERR_MISMATCH]++;
        return;
    }
    struct uslot *sl = &a->slot[s];
    if (!sl->used || sl->seq != seq) {    /* given up on already */
        if (w->measuring)
            w->st->late++;
        return;
    }
    uint64_t t = now_ns();
    if (sl->counted && t < w->win_end) {
        w->st->done++;
        hist_add(&w->st->h, (t - sl->t_sent) / 1000);
    }
    slot_free(a, s);
    if (a->st == US_PRIME) {
        a->st = US_ACTIVE;
        w->inflight--;
        w->st->ready++;
    }
}

static void udp_readable(struct uw *w, struct uassoc *a, int idx)
{
    uint32_t gen = a->gen;
    for (int r = 0; r < RX_ROUNDS && a->gen == gen; r++) {
        ssize_t k = recv(a->ufd, w->rx, LG_DGRAM_MAX + HDR_MAX + 256, 0);
        if (k < 0) {
            if (errno == EAGAIN)
                break;
            if (errno != ECONNREFUSED && errno != EINTR) {
                ua_fail(w, a, ERR_IO);
                return;
            }
            continue;                 /* an ICMP error: the datagram is lost */
        }
        ua_reply(w, a, idx, (size_t)k);
    }
    if (a->gen == gen)
        ua_fill(w, a, idx);
}

/* The relay address is known (or, direct, the echo server's): opens the
 * UDP socket and primes the association with one datagram. */
static void udp_open(struct uw *w, struct uassoc *a, int idx,
                     const struct sockaddr_storage *to, socklen_t tolen)
{
    a->ufd = socket(to->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->ufd < 0) {
        ua_fail(w, a, ERR_CONNECT);
        return;
    }
    set_bufs(a->ufd);
    struct epoll_event e = { .events = EPOLLIN };
    e.data.u64 = ev_data(a, idx, 1);
    if (connect(a->ufd, (const struct sockaddr *)to, tolen) < 0 ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, a->ufd, &e) < 0) {
        ua_fail(w, a, ERR_CONNECT);
        return;
    }
    a->st = US_PRIME;
    a->t0 = now_ns();
    ua_fill(w, a, idx);
}

/* ---------- the SOCKS5 control connection ---------- */

/* The ASSOCIATE reply is complete in a->in: where to send datagrams. */
static void on_bound(struct uw *w, struct uassoc *a, int idx)
{
    struct sockaddr_storage to;
    socklen_t tolen;
    const uint8_t *b = a->in;
    static const uint8_t zero[16];

    memcpy(&to, &w->o->proxy, sizeof to);
    tolen = w->o->proxy_len;
    if (b[3] == 1 && memcmp(b + 4, zero, 4) != 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&to;
        memset(&to, 0, sizeof to);
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, b + 4, 4);
        tolen = sizeof *s4;
    } else if (b[3] == 4 && memcmp(b + 4, zero, 16) != 0) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&to;
        memset(&to, 0, sizeof to);
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, b + 4, 16);
        tolen = sizeof *s6;
    }
    /* BND.ADDR 0.0.0.0 / :: keeps the proxy's address; the port is BND.PORT */
    uint16_t port = (uint16_t)(b[a->need - 2] << 8 | b[a->need - 1]);
    if (port == 0) {
        ua_fail(w, a, ERR_HANDSHAKE);
        return;
    }
    if (to.ss_family == AF_INET)
        ((struct sockaddr_in *)&to)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&to)->sin6_port = htons(port);
    tcp_interest(w, a, idx, EPOLLIN);  /* from now on only its end matters */
    udp_open(w, a, idx, &to, tolen);
}

static void on_tcp_reply(struct uw *w, struct uassoc *a, int idx)
{
    static const uint8_t assoc[10] = { 5, 3, 0, 1, 0, 0, 0, 0, 0, 0 };
    const uint8_t *b = a->in;

    if (a->st == US_GREET) {
        if (b[0] != 5 || b[1] != 0)
            goto bad;
        if (tcp_send(w, a, assoc, sizeof assoc) < 0)
            return;
        a->st = US_REQ;
        a->have = 0;
        a->need = 5;
        a->t0 = now_ns();
        return;
    }
    if (b[0] != 5 || b[1] != 0 || (b[3] != 1 && b[3] != 4))
        goto bad;                          /* a name as BND.ADDR: not supported */
    if (a->need == 5) {
        a->need = (uint16_t)(4 + (b[3] == 1 ? 4 : 16) + 2);
        return;
    }
    on_bound(w, a, idx);
    return;
bad:
    ua_fail(w, a, ERR_HANDSHAKE);
}

static void tcp_event(struct uw *w, struct uassoc *a, int idx)
{
    uint32_t gen = a->gen;
    static const uint8_t greet[3] = { 5, 1, 0 };

    if (a->st == US_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(a->tfd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
            ua_fail(w, a, ERR_CONNECT);
            return;
        }
        if (tcp_send(w, a, greet, sizeof greet) < 0)
            return;
        a->st = US_GREET;
        a->have = 0;
        a->need = 2;
        a->t0 = now_ns();
        tcp_interest(w, a, idx, EPOLLIN);
        return;
    }
    if (a->st == US_PRIME || a->st == US_ACTIVE) {
        /* the association lives as long as this connection: EOF ends it */
        uint8_t junk[256];
        ssize_t k = recv(a->tfd, junk, sizeof junk, 0);
        if (k == 0 || (k < 0 && errno != EAGAIN))
            ua_fail(w, a, k == 0 ? ERR_EOF : ERR_IO);
        return;
    }
    while (a->gen == gen && (a->st == US_GREET || a->st == US_REQ) && a->have < a->need) {
        ssize_t k = recv(a->tfd, a->in + a->have, (size_t)(a->need - a->have), 0);
        if (k < 0 && errno == EAGAIN)
            return;
        if (k <= 0) {
            ua_fail(w, a, k == 0 ? ERR_EOF : ERR_IO);
            return;
        }
        a->have = (uint16_t)(a->have + k);
        if (a->have == a->need)
            on_tcp_reply(w, a, idx);
    }
}

/* Opens association idx: the control connection, or straight the UDP
 * socket towards -c without a proxy. */
static void ua_start(struct uw *w, int idx)
{
    struct uassoc *a = &w->a[idx];
    int one = 1;

    a->t0 = now_ns();
    a->seq = 0;
    if (!w->socks) {
        udp_open(w, a, idx, &w->o->proxy, w->o->proxy_len);
        return;
    }
    a->st = US_CONNECTING;
    a->tfd = socket(w->o->proxy.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->tfd < 0) {
        ua_fail(w, a, ERR_CONNECT);
        return;
    }
    setsockopt(a->tfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event e = { .events = EPOLLOUT };
    e.data.u64 = ev_data(a, idx, 0);
    int r = connect(a->tfd, (const struct sockaddr *)&w->o->proxy, w->o->proxy_len);
    if ((r < 0 && errno != EINPROGRESS) || epoll_ctl(w->ep, EPOLL_CTL_ADD, a->tfd, &e) < 0)
        ua_fail(w, a, ERR_CONNECT);
}

/* ---------- phases ---------- */

static void on_event(struct uw *w, uint64_t data, uint32_t ev)
{
    int idx = (int)((uint32_t)data >> 1), udp = (int)(data & 1);
    struct uassoc *a = &w->a[idx];
    (void)ev;
    if ((uint32_t)(data >> 32) != a->gen || a->st == US_DEAD || a->st == US_FREE)
        return;                              /* stale */
    if (udp)
        udp_readable(w, a, idx);
    else
        tcp_event(w, a, idx);
}

/* Setup timeouts, priming retries, lost datagrams; refills windows. */
static void tick(struct uw *w, uint64_t now)
{
    for (int i = 0; i < w->n; i++) {
        struct uassoc *a = &w->a[i];
        if (a->st == US_FREE || a->st == US_DEAD)
            continue;
        if (a->st != US_ACTIVE && now - a->t0 > w->tmo_ns) {
            ua_fail(w, a, ERR_TIMEOUT);
            continue;
        }
        if (a->st != US_PRIME && a->st != US_ACTIVE)
            continue;
        for (int s = 0; s < w->win; s++) {
            struct uslot *sl = &a->slot[s];
            if (sl->used && now - sl->t_sent > w->loss_ns) {
                if (sl->counted)
                    w->st->lost++;
                slot_free(a, (uint16_t)s);
            }
        }
        ua_fill(w, a, i);
    }
}

static int outstanding(const struct uw *w)
{
    for (int i = 0; i < w->n; i++)
        if (w->a[i].st == US_ACTIVE && w->a[i].nfree < w->win)
            return 1;
    return 0;
}

/* Runs until the deadline; in setup, until every association is primed or
 * dead; while draining, until nothing is outstanding. */
static void run_loop(struct uw *w, int setup, int drain)
{
    struct epoll_event ev[256];
    uint64_t last = now_ns(), now = last;

    while (now < w->until) {
        if (setup) {
            while (w->started < w->n && w->inflight < w->o->inflight) {
                w->inflight++;
                ua_start(w, w->started++);
            }
            if (w->started == w->n && w->inflight == 0)
                break;
        }
        if (drain && !outstanding(w))
            break;
        int k = epoll_wait(w->ep, ev, 256, 5);
        for (int i = 0; i < k; i++)
            on_event(w, ev[i].data.u64, ev[i].events);
        now = now_ns();
        if (now - last >= TICK_NS) {
            tick(w, now);
            last = now;
        }
    }
}

/* The SOCKS5 UDP request header for -d, and the filler after the tag. */
static int build_tx(struct uw *w)
{
    const struct lg_opts *o = w->o;
    uint8_t *h = w->tx, a4[4], a6[16];
    size_t n = 0;

    if (w->socks) {
        h[0] = h[1] = h[2] = 0;
        n = 4;
        if (inet_pton(AF_INET, o->dhost, a4) == 1) {
            h[3] = 1; memcpy(h + 4, a4, 4); n += 4;
        } else if (inet_pton(AF_INET6, o->dhost, a6) == 1) {
            h[3] = 4; memcpy(h + 4, a6, 16); n += 16;
        } else {
            return -1;                  /* names would not fit HDR_MAX */
        }
        h[n++] = (uint8_t)(o->dport >> 8);
        h[n++] = (uint8_t)o->dport;
    }
    w->hdr_len = n;
    uint32_t x = 0x9e3779b9u;
    for (int i = 0; i < o->size; i++) {
        x = x * 1103515245u + 12345u;
        w->tx[n + (size_t)i] = (uint8_t)(x >> 16);
    }
    return 0;
}

static int uw_init(struct uw *w, struct lg_worker *lw)
{
    memset(w, 0, sizeof *w);
    w->w = lw;
    w->o = lw->o;
    w->st = &lw->st;
    w->n = lw->nconns;
    w->win = lw->o->window;
    w->socks = lw->o->mode == MODE_SOCKS5;
    w->loss_ns = (uint64_t)(lw->o->loss_timeout * 1e9);
    w->tmo_ns = (uint64_t)(lw->o->timeout * 1e9);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    int n = w->n > 0 ? w->n : 1;
    w->a = calloc((size_t)n, sizeof *w->a);
    w->slots = calloc((size_t)n * (size_t)w->win, sizeof *w->slots);
    w->frees = calloc((size_t)n * (size_t)w->win, sizeof *w->frees);
    w->tx = malloc(HDR_MAX + LG_DGRAM_MAX);
    w->rx = malloc(LG_DGRAM_MAX + HDR_MAX + 256);
    if (w->ep < 0 || !w->a || !w->slots || !w->frees || !w->tx || !w->rx)
        return -1;
    for (int i = 0; i < w->n; i++) {
        struct uassoc *a = &w->a[i];
        a->tfd = a->ufd = -1;
        a->slot = w->slots + (size_t)i * (size_t)w->win;
        a->freel = w->frees + (size_t)i * (size_t)w->win;
        a->nfree = w->win;
        for (int s = 0; s < w->win; s++)
            a->freel[s] = (uint16_t)s;
    }
    return build_tx(w);
}

static void uw_free(struct uw *w)
{
    for (int i = 0; w->a && i < w->n; i++) {
        if (w->a[i].tfd >= 0)
            close(w->a[i].tfd);
        if (w->a[i].ufd >= 0)
            close(w->a[i].ufd);
    }
    free(w->a);
    free(w->slots);
    free(w->frees);
    free(w->tx);
    free(w->rx);
    if (w->ep >= 0)
        close(w->ep);
}

/* Thread entry, same phases as client_worker: setup (associate and prime)
 * | barrier | barrier | measured window | drain | close everything. */
void *udp_worker(void *arg)
{
    struct lg_worker *lw = arg;
    struct uw w;
    int ok = uw_init(&w, lw) == 0;

    if (ok) {
        w.until = now_ns() + (uint64_t)(lw->o->setup_limit * 1e9);
        run_loop(&w, 1, 0);
    } else {
        lw->st.err[ERR_HANDSHAKE]++;
    }
    pthread_barrier_wait(lw->bar);
    pthread_barrier_wait(lw->bar);
    if (ok) {
        uint64_t t0 = now_ns();
        w.until = w.win_end = t0 + (uint64_t)(lw->o->duration * 1e9);
        w.measuring = w.sending = 1;
        for (int i = 0; i < w.n; i++)
            ua_fill(&w, &w.a[i], i);
        run_loop(&w, 0, 0);
        lw->window = (double)(now_ns() - t0) / 1e9;
        w.sending = 0;
        w.until = now_ns() + w.loss_ns + 2 * TICK_NS;
        run_loop(&w, 0, 1);
        for (int i = 0; i < w.n; i++)     /* still out: lost (ua_close counts) */
            if (w.a[i].st == US_ACTIVE)
                ua_close(&w, &w.a[i]);
    }
    uw_free(&w);
    return NULL;
}
