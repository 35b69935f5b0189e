/* proxyin.c - see proxyin.h. */
#include "server/proxyin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "obs/log.h"
#include "proto/proxy_proto.h"
#include "server/worker.h"

struct proxyin {
    struct loop_io io;
    struct loop_timer timer;
    struct wlistener *wl;
    struct net_addr peer;            /* the connection's own: the balancer */
    uint64_t start_ms;
    struct proxyin *prev, *next;     /* the worker's list */
    size_t have;                     /* header bytes consumed so far */
    uint8_t buf[PP_MAX];
};

static unsigned held;   /* per process, atomic; an approximate cap */

static void unlink_held(struct proxyin *p)
{
    struct server_worker *w = p->wl->w;
    if (p->prev) p->prev->next = p->next;
    else w->proxyins = p->next;
    if (p->next) p->next->prev = p->prev;
    __atomic_sub_fetch(&held, 1, __ATOMIC_RELAXED);
}

/* Ends the wait; keep_fd: the fd goes on to admission, else it is closed. */
static void finish(struct proxyin *p, int keep_fd)
{
    struct loop *l = p->wl->w->rw.loop;
    unlink_held(p);
    loop_timer_cancel(l, &p->timer);
    if (keep_fd) loop_io_del(l, &p->io);
    else loop_io_close(l, &p->io);
    loop_defer_free(l, p, free);     /* this batch may still hold events for it */
}

static void log_failure(const struct proxyin *p, const char *reason)
{
    char c[NET_ADDR_STRLEN];
    if (!log_enabled(LOG_INFO)) return;
    log_msg(LOG_INFO, "sess=- listener=%s client=%s upstream=- up=0 down=0 dur_ms=%llu end=proxy_header reason=%s",
            p->wl->cfg->name, net_addr_format(&p->peer, c, sizeof(c)),
            (unsigned long long)(loop_now(p->wl->w->rw.loop) - p->start_ms), reason);
}

static void fail(struct proxyin *p, const char *reason)
{
    log_failure(p, reason);
    finish(p, 0);
}

static void addr_from_pp(struct net_addr *out, const struct pp_addr *a)
{
    net_addr_from_ip(out, a->family, a->ip, a->port);
}

/* The header is complete: the client it names (or, for LOCAL and the like,
 * the connection's own peer) is admitted like any accepted client. */
static void header_done(struct proxyin *p, const struct pp_header *h)
{
    struct wlistener *wl = p->wl;
    struct net_addr client = p->peer;
    int fd = p->io.fd;
    if (!h->local) addr_from_pp(&client, &h->src);
    if (log_enabled(LOG_DEBUG)) {
        char c[NET_ADDR_STRLEN], b[NET_ADDR_STRLEN];
        log_msg(LOG_DEBUG, "listener=%s PROXY v%u header from %s: client=%s", wl->cfg->name, h->version,
                net_addr_format(&p->peer, b, sizeof(b)), net_addr_format(&client, c, sizeof(c)));
    }
    finish(p, 1);
    worker_admit(wl, fd, &client);
}

/* Peeks at what has come, parses it after what was consumed before, and
 * consumes only header bytes: all of them while the header is incomplete
 * (every byte of a proper prefix is the header's), else exactly the rest
 * of the header. Level-triggered epoll would spin on bytes left unread. */
static void on_readable(struct loop *l, struct loop_io *io, uint32_t events)
{
    (void)l;
    (void)events;
    struct proxyin *p = io->owner;
    struct pp_header h;
    enum pp_error err = PP_ERR_NONE;
    size_t consumed = 0;
    ssize_t n = recv(io->fd, p->buf + p->have, sizeof(p->buf) - p->have, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        fail(p, n == 0 ? "eof" : "reset");
        return;
    }
    enum pp_status st = pp_parse(p->buf, p->have + (size_t)n, &h, &consumed, &err);
    if (st == PP_INVALID) {
        fail(p, pp_error_name(err));
        return;
    }
    size_t take = st == PP_DONE ? consumed - p->have : (size_t)n;
    if (recv(io->fd, p->buf + p->have, take, 0) != (ssize_t)take) {
        fail(p, "reset");
        return;
    }
    p->have += take;
    if (st == PP_DONE) header_done(p, &h);
}

static void on_timeout(struct loop *l, struct loop_timer *t)
{
    (void)l;
    fail(t->owner, "timeout");
}

void proxyin_start(struct wlistener *wl, int fd, const struct net_addr *peer)
{
    struct loop *l = wl->w->rw.loop;
    struct proxyin *p = NULL;
    if (__atomic_add_fetch(&held, 1, __ATOMIC_RELAXED) > PROXYIN_MAX_HELD || !(p = calloc(1, sizeof(*p)))) {
        __atomic_sub_fetch(&held, 1, __ATOMIC_RELAXED);
        close(fd);
        if (log_enabled(LOG_INFO)) {
            char c[NET_ADDR_STRLEN];
            log_msg(LOG_INFO, "sess=- listener=%s client=%s upstream=- up=0 down=0 dur_ms=0 end=limit "
                    "limit=proxy_header_held", wl->cfg->name, net_addr_format(peer, c, sizeof(c)));
        }
        return;
    }
    p->wl = wl;
    p->peer = *peer;
    p->start_ms = loop_now(l);
    loop_timer_init(&p->timer, on_timeout, p);
    if (loop_io_add(l, &p->io, fd, LOOP_READ, on_readable, p) < 0) {
        __atomic_sub_fetch(&held, 1, __ATOMIC_RELAXED);
        close(fd);
        free(p);
        return;
    }
    loop_timer_arm_in(l, &p->timer, wl->cfg->accept_proxy_timeout_ms);
    p->next = wl->w->proxyins;
    if (p->next) p->next->prev = p;
    wl->w->proxyins = p;
}

void proxyin_close_listener(struct wlistener *wl)
{
    struct proxyin *p = wl->w->proxyins, *next;
    for (; p; p = next) {
        next = p->next;
        if (p->wl == wl) finish(p, 0);
    }
}

void proxyin_move_listener(struct wlistener *from, struct wlistener *to)
{
    for (struct proxyin *p = from->w->proxyins; p; p = p->next)
        if (p->wl == from) p->wl = to;
}

void proxyin_close_all(struct server_worker *w)
{
    while (w->proxyins) finish(w->proxyins, 0);
}
