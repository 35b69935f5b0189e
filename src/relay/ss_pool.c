/* ss_pool.c - see ss_pool.h. */
#include "relay/ss_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/sock.h"
#include "obs/log.h"
#include "relay/rlistener.h"
#include "resolver/resolver.h"

#define POOL_TICK_MS 1000          /* age check and retry after failures */

enum { SLOT_EMPTY, SLOT_CONNECTING, SLOT_READY };

struct pool_slot {
    struct loop_io io;
    struct ss_pool *pool;
    uint64_t born_ms;
    uint8_t state;
};

struct ss_pool {
    struct relay_listener *wl;
    struct loop_timer tick;
    struct loop_timer refill;      /* after a take, once the epoll batch is over */
    struct resolver_query *rq;
    struct net_addr server;        /* resolved address; len 0 until known */
    size_t n;
    struct pool_slot slots[];
};

static void slot_close(struct pool_slot *s)
{
    loop_io_close(s->pool->wl->w->loop, &s->io);
    s->state = SLOT_EMPTY;
}

/* Readiness of a pooled socket: WRITE while connecting (done or failed);
 * READ once ready means the server closed it or sent bytes unasked: either
 * way it is no longer a clean fresh connection. */
static void slot_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct pool_slot *s = io->owner;
    (void)events;
    if (s->state == SLOT_CONNECTING && sock_error(io->fd) == 0) {
        s->state = SLOT_READY;
        loop_io_want(l, io, LOOP_READ);
        return;
    }
    slot_close(s);
}

static void fill(struct ss_pool *p)
{
    struct loop *l = p->wl->w->loop;
    if (!p->server.len) return;
    for (size_t i = 0; i < p->n; i++) {
        struct pool_slot *s = &p->slots[i];
        if (s->state != SLOT_EMPTY) continue;
        int fd = sock_connect(&p->server);
        if (fd < 0) return;                      /* retried at the next tick */
        if (loop_io_add(l, &s->io, fd, LOOP_WRITE, slot_cb, s) < 0) {
            close(fd);
            return;
        }
        s->state = SLOT_CONNECTING;
        s->born_ms = loop_now(l);
    }
}

static void refill_cb(struct loop *l, struct loop_timer *t)
{
    (void)l;
    fill(t->owner);
}

static void resolved(void *arg, int status, const struct resolved *res)
{
    struct ss_pool *p = arg;
    p->rq = NULL;
    if (status != RESOLVER_OK || res->n == 0) return;
    net_addr_from_sockaddr(&p->server, (const struct sockaddr *)&res->addr[0], res->len[0]);
    fill(p);
}

/* Every tick: replace sockets about to be closed by the server's handshake
 * timeout, re-resolve the server (names may move), refill. */
static void tick_cb(struct loop *l, struct loop_timer *t)
{
    struct ss_pool *p = t->owner;
    uint64_t max_age = p->wl->cfg->pool_max_age_ms;
    for (size_t i = 0; i < p->n; i++)
        if (p->slots[i].state != SLOT_EMPTY && loop_now(l) - p->slots[i].born_ms >= max_age)
            slot_close(&p->slots[i]);
    struct resolver *r = rlistener_resolver(p->wl);
    const struct host_port *hp = &p->wl->cfg->ss_server;
    if (!p->rq && r) p->rq = resolver_lookup(r, hp->host, hp->port, p->wl->cfg->prefer_ipv6 ?
                                             RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4, resolved, p);
    fill(p);
    loop_timer_arm_in(l, t, POOL_TICK_MS);
}

struct ss_pool *ss_pool_new(struct relay_listener *wl)
{
    const struct listener_cfg *cfg = wl->cfg;
    if (cfg->mode != MODE_SS_LOCAL || cfg->pool == 0) return NULL;
    struct ss_pool *p = calloc(1, sizeof(*p) + cfg->pool * sizeof(struct pool_slot));
    if (!p) return NULL;
    p->wl = wl;
    p->n = cfg->pool;
    for (size_t i = 0; i < p->n; i++) {
        p->slots[i].io.fd = -1;
        p->slots[i].pool = p;
    }
    loop_timer_init(&p->tick, tick_cb, p);
    loop_timer_init(&p->refill, refill_cb, p);
    loop_timer_arm_in(wl->w->loop, &p->tick, 0);
    return p;
}

void ss_pool_free(struct ss_pool *p)
{
    if (!p) return;
    loop_timer_cancel(p->wl->w->loop, &p->tick);
    loop_timer_cancel(p->wl->w->loop, &p->refill);
    if (p->rq) resolver_cancel(p->rq);
    for (size_t i = 0; i < p->n; i++)
        if (p->slots[i].state != SLOT_EMPTY) slot_close(&p->slots[i]);
    /* Slots hold loop_io: free after the batch. */
    loop_defer_free(p->wl->w->loop, p, free);
}

int ss_pool_take(struct ss_pool *p, struct net_addr *peer)
{
    struct pool_slot *best = NULL;
    if (!p) return -1;
    /* The youngest ready socket: the furthest from the server's timeout. */
    for (size_t i = 0; i < p->n; i++)
        if (p->slots[i].state == SLOT_READY && (!best || p->slots[i].born_ms > best->born_ms))
            best = &p->slots[i];
    if (!best) return -1;
    int fd = best->io.fd;
    loop_io_del(p->wl->w->loop, &best->io);      /* the session registers it anew */
    best->state = SLOT_EMPTY;
    *peer = p->server;
    /* Not fill() now: the current epoll batch may still hold an event for
     * the socket just taken, and a new connect in the same slot would
     * receive it (a stale EPOLLOUT marks a socket ready before it has
     * connected). Timers run after the batch. */
    loop_timer_arm_in(p->wl->w->loop, &p->refill, 0);
    return fd;
}
