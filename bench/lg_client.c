/* loadgen client side: one epoll loop per thread driving many non-blocking
 * connections through an optional SOCKS4/SOCKS5/HTTP CONNECT handshake, then one of the
 * scenarios (rate, pingpong, bulk, idle).
 *
 * Connection slots are reused; every (re)start bumps the slot's generation,
 * and epoll events carry (generation, index) so an event queued for a
 * socket that was closed earlier in the same batch is ignored. */
#include "lg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define TICK_NS        (10 * 1000000ull)   /* timeout / backoff scan period */
#define BACKOFF_NS     (5 * 1000000ull)    /* rate: wait after an error */
#define IO_ROUNDS      4                    /* bulk syscalls per event */
#define OUT_MAX        528                  /* largest handshake message */

enum cstate { CS_FREE, CS_BACKOFF, CS_CONNECTING, CS_GREET, CS_AUTH,
              CS_REQ5, CS_REQ4, CS_REQH, CS_READY, CS_ECHO, CS_HELD, CS_BULK };

struct conn {
    int fd;
    uint32_t gen;
    uint32_t seq;            /* echo messages sent on this connection */
    uint32_t interest;       /* current epoll mask */
    uint8_t st;
    uint16_t have, need;     /* bytes received toward the current reply */
    uint16_t out_len, out_off;
    uint64_t t0;             /* when the current step began */
    uint8_t out[OUT_MAX];
    uint8_t in[LG_MSG_MAX];
};

/* Per-thread runtime. */
struct cw {
    struct lg_worker *w;
    const struct lg_opts *o;
    struct lg_stats *st;
    int ep;
    int n;                   /* slots */
    struct conn *c;
    uint8_t *scratch;
    uint64_t until;          /* end of the current phase */
    int measuring;
    int started, inflight;   /* setup phase accounting */
    uint8_t greet[3], auth[OUT_MAX], req5[262], req4[270], reqh[OUT_MAX];
    uint16_t auth_len, req5_len, req4_len, reqh_len;
};

static void conn_start(struct cw *w, int i);
static void on_ready(struct cw *w, struct conn *c);

/* ---------- handshake messages, built once per thread ---------- */

static void build_socks5(struct cw *w)
{
    const struct lg_opts *o = w->o;
    uint8_t *r = w->req5, a4[4], a6[16];
    size_t ul = strlen(o->user), pl = strlen(o->pass), n = 4;

    w->greet[0] = 5; w->greet[1] = 1; w->greet[2] = o->has_auth ? 2 : 0;
    w->auth[0] = 1;
    w->auth[1] = (uint8_t)ul;
    memcpy(w->auth + 2, o->user, ul);
    w->auth[2 + ul] = (uint8_t)pl;
    memcpy(w->auth + 3 + ul, o->pass, pl);
    w->auth_len = (uint16_t)(3 + ul + pl);

    r[0] = 5; r[1] = 1; r[2] = 0;
    if (inet_pton(AF_INET, o->dhost, a4) == 1) {
        r[3] = 1; memcpy(r + 4, a4, 4); n += 4;
    } else if (inet_pton(AF_INET6, o->dhost, a6) == 1) {
        r[3] = 4; memcpy(r + 4, a6, 16); n += 16;
    } else {
        size_t hl = strlen(o->dhost);
        r[3] = 3; r[4] = (uint8_t)hl; memcpy(r + 5, o->dhost, hl); n += 1 + hl;
    }
    r[n++] = (uint8_t)(o->dport >> 8);
    r[n++] = (uint8_t)o->dport;
    w->req5_len = (uint16_t)n;
}

/* SOCKS4 for IPv4 literals, SOCKS4a (0.0.0.1 + hostname) otherwise. */
static void build_socks4(struct cw *w)
{
    const struct lg_opts *o = w->o;
    uint8_t *r = w->req4, a4[4];
    size_t n = 8;

    r[0] = 4; r[1] = 1;
    r[2] = (uint8_t)(w->o->dport >> 8); r[3] = (uint8_t)o->dport;
    int lit = inet_pton(AF_INET, o->dhost, a4) == 1;
    if (!lit) {
        a4[0] = a4[1] = a4[2] = 0; a4[3] = 1;
    }
    memcpy(r + 4, a4, 4);
    memcpy(r + n, "lg", 3);
    n += 3;
    if (!lit) {
        size_t hl = strlen(o->dhost);
        memcpy(r + n, o->dhost, hl + 1);
        n += hl + 1;
    }
    w->req4_len = (uint16_t)n;
}

/* The reply ferry sends to a CONNECT: read as a whole, exactly. */
#define HTTP_ESTABLISHED "HTTP/1.1 200 Connection established\r\n\r\n"

/* CONNECT host:port, with Basic credentials when --user is given. */
static void build_http(struct cw *w)
{
    const struct lg_opts *o = w->o;
    char cred[520], b64[700], auth[760] = "";
    int six = strchr(o->dhost, ':') != NULL;

    if (o->has_auth) {
        int n = snprintf(cred, sizeof cred, "%s:%s", o->user, o->pass);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cred, n);
        snprintf(auth, sizeof auth, "Proxy-Authorization: Basic %s\r\n", b64);
    }
    int n = snprintf((char *)w->reqh, sizeof w->reqh, "CONNECT %s%s%s:%u HTTP/1.1\r\n%s\r\n",
                     six ? "[" : "", o->dhost, six ? "]" : "", (unsigned)o->dport, auth);
    w->reqh_len = n > 0 && (size_t)n < sizeof w->reqh ? (uint16_t)n : 0;
}

/* ---------- connection plumbing ---------- */

static void set_interest(struct cw *w, struct conn *c, uint32_t ev)
{
    if (c->interest == ev)
        return;
    struct epoll_event e = { .events = ev };
    e.data.u64 = ((uint64_t)c->gen << 32) | (uint64_t)(c - w->c);
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &e);
    c->interest = ev;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->gen++;
    c->st = CS_FREE;
}

/* Counts an error and closes; rate retries after a short backoff, the
 * setup phase frees an in-flight slot, other phases leave the slot dead. */
static void conn_fail(struct cw *w, struct conn *c, enum lg_err e)
{
    int in_setup = c->st != CS_READY && c->st != CS_HELD && c->st != CS_BULK
                   && !(c->st == CS_ECHO && w->o->scen == SC_PINGPONG);
    w->st->err[e]++;
    conn_close(c);
    if (w->o->scen == SC_RATE) {
        c->st = CS_BACKOFF;
        c->t0 = now_ns();
    } else if (in_setup && w->inflight > 0) {
        w->inflight--;
    }
}

/* Sends what is left of c->out. Returns 0 when all is sent (interest
 * goes back to reading), 1 when waiting for EPOLLOUT, -1 after failing. */
static int flush_out(struct cw *w, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off,
                         (size_t)(c->out_len - c->out_off), MSG_NOSIGNAL);
        if (k < 0 && errno == EAGAIN) {
            set_interest(w, c, EPOLLIN | EPOLLOUT);
            return 1;
        }
        if (k <= 0) {
            conn_fail(w, c, ERR_IO);
            return -1;
        }
        c->out_off = (uint16_t)(c->out_off + k);
    }
    set_interest(w, c, EPOLLIN);
    return 0;
}

/* Queues a message, moves to state st and waits for a reply of need bytes. */
static void send_expect(struct cw *w, struct conn *c, const uint8_t *msg,
                        size_t len, uint8_t st, uint16_t need)
{
    if (msg != c->out)
        memcpy(c->out, msg, len);
    c->out_len = (uint16_t)len;
    c->out_off = 0;
    c->st = st;
    c->have = 0;
    c->need = need;
    c->t0 = now_ns();
    flush_out(w, c);
}

static void fill_payload(uint8_t *p, int size, uint32_t id, uint32_t seq)
{
    uint32_t x = id * 2654435761u ^ seq * 40503u;
    for (int i = 0; i < size; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static void send_echo(struct cw *w, struct conn *c)
{
    uint32_t id = (uint32_t)(w->w->idx << 20) + (uint32_t)(c - w->c);
    fill_payload(c->out, w->o->size, id, ++c->seq);
    send_expect(w, c, c->out, (size_t)w->o->size, CS_ECHO,
                (uint16_t)w->o->size);
}

/* Opens slot i towards -c and registers it. */
static void conn_start(struct cw *w, int i)
{
    struct conn *c = &w->c[i];
    int one = 1;

    c->fd = socket(w->o->proxy.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    c->seq = 0;
    c->t0 = now_ns();
    if (c->fd < 0) {
        c->st = CS_CONNECTING;
        conn_fail(w, c, ERR_CONNECT);
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->st = CS_CONNECTING;
    c->interest = EPOLLOUT;
    struct epoll_event e = { .events = EPOLLOUT };
    e.data.u64 = ((uint64_t)c->gen << 32) | (uint64_t)i;
    int r = connect(c->fd, (const struct sockaddr *)&w->o->proxy,
                    w->o->proxy_len);
    if ((r < 0 && errno != EINPROGRESS) ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
        conn_fail(w, c, ERR_CONNECT);
}

/* ---------- state machine ---------- */

static void on_connected(struct cw *w, struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
        conn_fail(w, c, ERR_CONNECT);
        return;
    }
    switch (w->o->mode) {
    case MODE_TCP:
        on_ready(w, c);
        break;
    case MODE_SOCKS4:
        send_expect(w, c, w->req4, w->req4_len, CS_REQ4, 8);
        break;
    case MODE_SOCKS5:
        send_expect(w, c, w->greet, 3, CS_GREET, 2);
        break;
    case MODE_HTTP:
        send_expect(w, c, w->reqh, w->reqh_len, CS_REQH, (uint16_t)strlen(HTTP_ESTABLISHED));
        break;
    }
}

/* A complete reply of c->need bytes is in c->in: check it, take the next
 * handshake step or finish. A SOCKS5 reply is read in two parts, first 5
 * bytes, then the rest of the bound address once its length is known. */
static void on_reply(struct cw *w, struct conn *c)
{
    const uint8_t *b = c->in;
    switch (c->st) {
    case CS_REQ4:
        if (b[1] != 0x5a)
            break;
        on_ready(w, c);
        return;
    case CS_REQH:
        if (memcmp(b, HTTP_ESTABLISHED, strlen(HTTP_ESTABLISHED)) != 0)
            break;
        on_ready(w, c);
        return;
    case CS_GREET:
        if (b[0] != 5 || b[1] != w->greet[2])
            break;
        if (w->o->has_auth)
            send_expect(w, c, w->auth, w->auth_len, CS_AUTH, 2);
        else
            send_expect(w, c, w->req5, w->req5_len, CS_REQ5, 5);
        return;
    case CS_AUTH:
        if (b[1] != 0)
            break;
        send_expect(w, c, w->req5, w->req5_len, CS_REQ5, 5);
        return;
    case CS_REQ5:
        if (b[0] != 5 || b[1] != 0 || (b[3] != 1 && b[3] != 3 && b[3] != 4))
            break;
        if (c->need == 5) {
            c->need = (uint16_t)(4 + (b[3] == 1 ? 4 : b[3] == 4 ? 16 : 1 + b[4]) + 2);
            return;
        }
        on_ready(w, c);
        return;
    default:
        return;
    }
    conn_fail(w, c, ERR_HANDSHAKE);
}

static void on_echo(struct cw *w, struct conn *c)
{
    uint8_t want[LG_MSG_MAX];
    uint32_t id = (uint32_t)(w->w->idx << 20) + (uint32_t)(c - w->c);
    uint64_t t = now_ns();

    fill_payload(want, w->o->size, id, c->seq);
    if (memcmp(want, c->in, (size_t)w->o->size) != 0) {
        conn_fail(w, c, ERR_MISMATCH);
        return;
    }
    switch (w->o->scen) {
    case SC_RATE:
        if (w->measuring)
            w->st->done++;
        conn_close(c);
        conn_start(w, (int)(c - w->c));
        break;
    case SC_PINGPONG:
        if (w->measuring) {
            w->st->done++;
            hist_add(&w->st->h, (t - c->t0) / 1000);
        }
        send_echo(w, c);
        break;
    default:                          /* idle: hold it */
        c->st = CS_HELD;
        w->inflight--;
        w->st->ready++;
        break;
    }
}

/* Handshake finished: start the scenario's first step on this conn. */
static void on_ready(struct cw *w, struct conn *c)
{
    enum lg_scen s = w->o->scen;
    if (s == SC_RATE || s == SC_IDLE) {
        send_echo(w, c);
        return;
    }
    c->st = CS_READY;
    set_interest(w, c, 0);
    w->inflight--;
    w->st->ready++;
}

/* Reads toward the current reply; never past it, so bytes that follow a
 * SOCKS reply stay in the socket for the scenario. */
static void read_reply(struct cw *w, struct conn *c)
{
    uint32_t gen = c->gen;
    while (c->gen == gen && c->have < c->need) {
        ssize_t k = recv(c->fd, c->in + c->have, (size_t)(c->need - c->have), 0);
        if (k < 0 && errno == EAGAIN)
            return;
        if (k <= 0) {
            conn_fail(w, c, k == 0 ? ERR_EOF : ERR_IO);
            return;
        }
        c->have = (uint16_t)(c->have + k);
        if (c->have == c->need) {
            uint16_t need = c->need;
            if (c->st == CS_ECHO)
                on_echo(w, c);
            else
                on_reply(w, c);
            if (c->need == need)  /* same step: done; else read the rest */
                return;
        }
    }
}

/* Bulk: write or read up to IO_ROUNDS scratch buffers. */
static void bulk_io(struct cw *w, struct conn *c, uint32_t ev)
{
    for (int r = 0; r < IO_ROUNDS; r++) {
        ssize_t k;
        if (w->o->dir_down || !(ev & EPOLLOUT))
            k = recv(c->fd, w->scratch, LG_SCRATCH, 0);
        else
            k = send(c->fd, w->scratch, LG_SCRATCH, MSG_NOSIGNAL);
        if (k < 0 && errno == EAGAIN)
            return;
        if (k <= 0) {
            conn_fail(w, c, k == 0 ? ERR_EOF : ERR_IO);
            return;
        }
        if (w->measuring && (w->o->dir_down || (ev & EPOLLOUT)))
            w->st->bytes += (uint64_t)k;
    }
}

static void on_event(struct cw *w, uint64_t data, uint32_t ev)
{
    struct conn *c = &w->c[(uint32_t)data];
    uint32_t gen = c->gen;
    if ((uint32_t)(data >> 32) != gen || c->fd < 0)
        return;                      /* stale: slot was reused */
    if (c->st == CS_CONNECTING) {
        on_connected(w, c);
        return;
    }
    if (c->st == CS_BULK) {
        bulk_io(w, c, ev);
        return;
    }
    if (c->st == CS_HELD || c->st == CS_READY) {
        /* nothing is expected: EOF, RST or stray bytes from the proxy */
        conn_fail(w, c, c->st == CS_HELD ? ERR_DROPPED : ERR_EOF);
        return;
    }
    if ((ev & EPOLLOUT) && flush_out(w, c) < 0)
        return;
    if (c->gen == gen && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        read_reply(w, c);
}

/* ---------- phases ---------- */

/* Timeouts of in-progress steps, and rate's backoff restarts. */
static void tick(struct cw *w, uint64_t now)
{
    uint64_t tmo = (uint64_t)(w->o->timeout * 1e9);
    for (int i = 0; i < w->n; i++) {
        struct conn *c = &w->c[i];
        if (c->st == CS_BACKOFF && now - c->t0 >= BACKOFF_NS && now < w->until)
            conn_start(w, i);
        else if (c->st >= CS_CONNECTING && c->st <= CS_REQH && now - c->t0 > tmo)
            conn_fail(w, c, ERR_TIMEOUT);
        else if (c->st == CS_ECHO && now - c->t0 > tmo)
            conn_fail(w, c, ERR_TIMEOUT);
    }
}

/* Setup phase: keeps up to --inflight connections being opened. */
static void feed(struct cw *w)
{
    while (w->started < w->n && w->inflight < w->o->inflight) {
        w->inflight++;
        conn_start(w, w->started++);
    }
}

/* Runs the loop until the phase deadline, or until setup is complete
 * when setup is set. */
static void run_loop(struct cw *w, int setup)
{
    struct epoll_event ev[256];
    uint64_t last = now_ns(), now = last;

    while (now < w->until) {
        if (setup) {
            feed(w);
            if (w->started == w->n && w->inflight == 0)
                break;
        }
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

/* Starts the measured part of pingpong / bulk on every ready conn. */
static void kick(struct cw *w)
{
    for (int i = 0; i < w->n; i++) {
        struct conn *c = &w->c[i];
        if (c->st != CS_READY)
            continue;
        if (w->o->scen == SC_PINGPONG) {
            send_echo(w, c);
        } else {
            c->st = CS_BULK;
            set_interest(w, c, w->o->dir_down ? EPOLLIN : EPOLLIN | EPOLLOUT);
        }
    }
}

/* Idle: counts held connections the proxy closed while we waited. */
static void count_dropped(struct cw *w)
{
    struct epoll_event ev[256];
    int k;
    for (int round = 0; round < 64; round++) {
        if ((k = epoll_wait(w->ep, ev, 256, 0)) <= 0)
            break;
        for (int i = 0; i < k; i++) {
            struct conn *c = &w->c[(uint32_t)ev[i].data.u64];
            if (c->st == CS_HELD && (uint32_t)(ev[i].data.u64 >> 32) == c->gen) {
                w->st->err[ERR_DROPPED]++;
                conn_close(c);
            }
        }
    }
}

static int cw_init(struct cw *w, struct lg_worker *lw)
{
    memset(w, 0, sizeof *w);
    w->w = lw;
    w->o = lw->o;
    w->st = &lw->st;
    w->n = lw->nconns;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->c = calloc((size_t)(w->n > 0 ? w->n : 1), sizeof *w->c);
    w->scratch = malloc(LG_SCRATCH);
    if (w->ep < 0 || !w->c || !w->scratch)
        return -1;
    for (int i = 0; i < w->n; i++)
        w->c[i].fd = -1;
    memset(w->scratch, 'x', LG_SCRATCH);
    build_socks5(w);
    build_socks4(w);
    build_http(w);
    return 0;
}

static void cw_free(struct cw *w)
{
    for (int i = 0; w->c && i < w->n; i++)
        if (w->c[i].fd >= 0)
            close(w->c[i].fd);
    free(w->c);
    free(w->scratch);
    if (w->ep >= 0)
        close(w->ep);
}

/* Thread entry. Phases: setup (not for rate) | barrier | barrier (main
 * reads RSS in between for idle) | measured run | close everything. */
void *client_worker(void *arg)
{
    struct lg_worker *lw = arg;
    struct cw w;
    int ok = cw_init(&w, lw) == 0;
    uint64_t dur = (uint64_t)(lw->o->duration * 1e9);

    if (ok && lw->o->scen != SC_RATE) {
        uint64_t t0 = now_ns();
        w.until = t0 + (uint64_t)(lw->o->setup_limit * 1e9);
        run_loop(&w, 1);
        lw->window = (double)(now_ns() - t0) / 1e9;   /* idle: setup time */
    }
    pthread_barrier_wait(lw->bar);
    pthread_barrier_wait(lw->bar);
    if (ok && lw->o->scen == SC_IDLE) {
        w.measuring = 1;
        count_dropped(&w);
    } else if (ok) {
        uint64_t t0 = now_ns();
        w.until = t0 + dur;
        w.measuring = 1;
        if (lw->o->scen == SC_RATE)
            for (int i = 0; i < w.n; i++)
                conn_start(&w, i);
        kick(&w);
        run_loop(&w, 0);
        lw->window = (double)(now_ns() - t0) / 1e9;
    }
    cw_free(&w);
    return NULL;
}
