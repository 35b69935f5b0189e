/* worker.c - see worker.h. */
#include "core/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/sock.h"
#include "obs/log.h"
#include "relay/session.h"
#include "resolver/resolver.h"

#define ACCEPT_BATCH 64          /* accepts per wakeup per socket */
#define ACCEPT_PAUSE_MS 100      /* back-off after EMFILE & co */
#define BUF_SIZE (64u * 1024u)
#define POOL_MAX_FREE 64

static unsigned running_workers;  /* atomic */

unsigned workers_running(void)
{
    return __atomic_load_n(&running_workers, __ATOMIC_ACQUIRE);
}

/* ---- accept ---- */

static void set_accepting(struct wlistener *wl, int on)
{
    for (size_t i = 0; i < wl->nsocks; i++) {
        struct wsocket *ws = &wl->socks[i];
        if (ws->fd >= 0 && !loop_timer_armed(&ws->pause_timer))
            loop_io_want(wl->w->loop, &ws->io, on ? LOOP_READ : 0);
    }
}

static int over_maxconn(const struct wlistener *wl)
{
    return wl->cfg->maxconn && wl->nsessions >= wl->cfg->maxconn;
}

static void log_denied(const struct wlistener *wl, const struct net_addr *peer)
{
    char c[NET_ADDR_STRLEN];
    if (!log_enabled(LOG_INFO)) return;
    log_msg(LOG_INFO, "sess=- listener=%s client=%s upstream=- up=0 down=0 dur_ms=0 end=denied",
            wl->cfg->name, net_addr_format(peer, c, sizeof(c)));
}

static int client_allowed(const struct wlistener *wl, const struct net_addr *peer)
{
    const struct acl *a = &wl->cfg->client_acl;
    if (a->n == 0) return 1;
    if (peer->u.sa.sa_family == AF_INET)
        return acl_check_addr(a, 4, (const uint8_t *)&peer->u.in.sin_addr);
    return acl_check_addr(a, 6, peer->u.in6.sin6_addr.s6_addr);
}

/* Out of fds (or memory): stop accepting for a moment instead of spinning on
 * a listen socket that stays readable. */
static void pause_accept(struct wsocket *ws, int err)
{
    struct wlistener *wl = ws->wl;
    log_warn("listener=%s accept paused %d ms: %s", wl->cfg->name, ACCEPT_PAUSE_MS, strerror(err));
    loop_io_want(wl->w->loop, &ws->io, 0);
    loop_timer_arm_in(wl->w->loop, &ws->pause_timer, ACCEPT_PAUSE_MS);
}

static void resume_cb(struct loop *l, struct loop_timer *t)
{
    struct wsocket *ws = t->owner;
    if (ws->fd >= 0 && !over_maxconn(ws->wl)) loop_io_want(l, &ws->io, LOOP_READ);
}

static void accept_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct wsocket *ws = io->owner;
    struct wlistener *wl = ws->wl;
    (void)l;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct net_addr peer;
        peer.len = sizeof(peer.u);
        int fd = accept4(ws->fd, &peer.u.sa, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accept(ws, errno);
            return;
        }
        if (!client_allowed(wl, &peer)) {
            log_denied(wl, &peer);
            close(fd);
            continue;
        }
        sess_accept(wl, fd, &peer);
        if (over_maxconn(wl)) {
            wl->paused_full = 1;
            set_accepting(wl, 0);
            return;
        }
    }
}

void worker_session_closed(struct wlistener *wl)
{
    struct worker *w = wl->w;
    if (wl->paused_full && !over_maxconn(wl) && !w->draining) {
        wl->paused_full = 0;
        set_accepting(wl, 1);
    }
    if (w->draining && w->nsessions == 0) loop_stop(w->loop);
}

struct resolver *worker_resolver(struct wlistener *wl)
{
    if (wl->resolver) return wl->resolver;
    char err[256];
    struct resolver_opts o = {
        .servers = wl->cfg->dns_servers[0] ? wl->cfg->dns_servers : NULL,
        .timeout_ms = wl->cfg->resolve_timeout_ms,
        .cache_entries = 1024,
    };
    wl->resolver = resolver_new(wl->w->loop, &o, err, sizeof(err));
    if (!wl->resolver) log_error("listener=%s resolver: %s", wl->cfg->name, err);
    return wl->resolver;
}

/* ---- drain and stop ---- */

static void close_listen_sockets(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct wlistener *wl = &w->listeners[i];
        for (size_t j = 0; j < wl->nsocks; j++) {
            struct wsocket *ws = &wl->socks[j];
            if (ws->fd < 0) continue;
            loop_timer_cancel(w->loop, &ws->pause_timer);
            loop_io_del(w->loop, &ws->io);
            close(ws->fd);
            ws->fd = -1;
        }
    }
}

static void drain_timeout_cb(struct loop *l, struct loop_timer *t)
{
    struct worker *w = t->owner;
    sess_close_all(w, END_DRAIN);
    loop_stop(l);
}

/* Runs on the worker's thread when main pokes it with loop_wake(). */
static void wake_hook(struct loop *l, void *arg)
{
    struct worker *w = arg;
    int mode = __atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE);
    if (mode == 0) return;
    if (!w->draining) {
        w->draining = 1;
        close_listen_sockets(w);
        loop_timer_arm_in(l, &w->drain_timer, w->cfg->drain_timeout_ms);
    }
    if (mode == 2 || w->nsessions == 0) {
        sess_close_all(w, END_DRAIN);
        loop_stop(l);
    }
}

/* ---- setup ---- */

static int listener_init(struct worker *w, struct wlistener *wl, const struct listener_cfg *lc,
                         char *err, size_t errlen)
{
    wl->w = w;
    wl->cfg = lc;
    wl->lb.servers = wl->lb_servers;
    wl->lb.n = lc->nupstreams;
    for (size_t i = 0; i < lc->nupstreams; i++) wl->lb_servers[i].weight = lc->upstreams[i].weight;
    for (size_t i = 0; i < lc->nlisten; i++) {
        struct wsocket *ws = &wl->socks[i];
        ws->wl = wl;
        ws->io.fd = -1;
        loop_timer_init(&ws->pause_timer, resume_cb, ws);
        ws->fd = sock_listen(&lc->listen[i], 1, (int)lc->backlog, err, errlen);
        if (ws->fd < 0) return -1;
        wl->nsocks++;
        if (loop_io_add(w->loop, &ws->io, ws->fd, LOOP_READ, accept_cb, ws) < 0) {
            snprintf(err, errlen, "epoll: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int worker_init(struct worker *w, int id, const struct ferry_cfg *cfg, char *err, size_t errlen)
{
    w->id = id;
    w->cfg = cfg;
    buf_pool_init(&w->bufs, BUF_SIZE, POOL_MAX_FREE);
    kpipe_pool_init(&w->pipes, POOL_MAX_FREE, 0);
    if (!(w->loop = loop_new())) {
        snprintf(err, errlen, "cannot create event loop: %s", strerror(errno));
        return -1;
    }
    loop_timer_init(&w->drain_timer, drain_timeout_cb, w);
    loop_set_wake_hook(w->loop, wake_hook, w);
    w->listeners = calloc(cfg->nlisteners, sizeof(*w->listeners));
    if (!w->listeners) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (listener_init(w, &w->listeners[i], &cfg->listeners[i], err, errlen) < 0) return -1;
    return 0;
}

static void worker_destroy(struct worker *w)
{
    if (w->loop) {
        sess_close_all(w, END_DRAIN);
        close_listen_sockets(w);
        for (size_t i = 0; i < w->nlisteners; i++)
            if (w->listeners[i].resolver) resolver_free(w->listeners[i].resolver);
        loop_free(w->loop);   /* runs the deferred frees */
    }
    free(w->listeners);
    buf_pool_destroy(&w->bufs);
    kpipe_pool_destroy(&w->pipes);
}

struct worker *workers_create(const struct ferry_cfg *cfg, unsigned n, char *err, size_t errlen)
{
    struct worker *ws = calloc(n, sizeof(*ws));
    if (!ws) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (worker_init(&ws[i], (int)i, cfg, err, errlen) < 0) {
            for (unsigned j = 0; j <= i; j++) worker_destroy(&ws[j]);
            free(ws);
            return NULL;
        }
    }
    return ws;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (loop_run(w->loop) < 0) {
        log_error("worker %d: event loop failed: %s", w->id, strerror(errno));
        w->exit_code = 1;
    }
    __atomic_fetch_sub(&running_workers, 1, __ATOMIC_RELEASE);
    return NULL;
}

int workers_start(struct worker *ws, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        __atomic_fetch_add(&running_workers, 1, __ATOMIC_RELEASE);
        int e = pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
        if (e) {
            __atomic_fetch_sub(&running_workers, 1, __ATOMIC_RELEASE);
            errno = e;
            return -1;
        }
    }
    return 0;
}

void workers_request_stop(struct worker *ws, unsigned n, int mode)
{
    for (unsigned i = 0; i < n; i++) {
        __atomic_store_n(&ws[i].stop_requested, mode, __ATOMIC_RELEASE);
        loop_wake(ws[i].loop);
    }
}

void workers_join_and_free(struct worker *ws, unsigned n)
{
    for (unsigned i = 0; i < n; i++) pthread_join(ws[i].thread, NULL);
    for (unsigned i = 0; i < n; i++) worker_destroy(&ws[i]);
    free(ws);
}
