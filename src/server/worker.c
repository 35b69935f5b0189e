/* worker.c - see worker.h. */
#include "server/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/admit.h"
#include "net/sock.h"
#include "obs/log.h"
#include "relay/connect.h"
#include "relay/session.h"
#include "relay/ss_pool.h"
#include "resolver/resolver.h"

#define ACCEPT_BATCH 64          /* accepts per wakeup per socket */
#define ACCEPT_PAUSE_MS 100      /* back-off after EMFILE & co */
#define BUF_SIZE (64u * 1024u)
#define POOL_MAX_FREE 64
/* Kernel pipes for splice: 256 KiB rather than the default 64 KiB moves a
 * bulk stream in a quarter of the splice calls and lets TCP build larger
 * segments (bench: +10-20 % single-stream relay throughput). An empty pipe
 * holds no pages, so pooled pipes cost almost nothing; the kernel may grant
 * less (pipe-user-pages-soft), and the pump asks for what it got. */
#define KPIPE_SIZE (256u * 1024u)

static unsigned running_workers;  /* atomic */

unsigned workers_running(void)
{
    return __atomic_load_n(&running_workers, __ATOMIC_ACQUIRE);
}

/* ---- accept ---- */

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
    if (ws->fd >= 0) loop_io_want(l, &ws->io, LOOP_READ);
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
        int counted_ip;
        const char *refused = admit_client(wl, &peer, &counted_ip);
        if (refused) {
            admit_refuse(wl, fd, &peer, refused);
            continue;
        }
        if (sess_accept(wl, fd, &peer, counted_ip) < 0) admit_release(wl, &peer, counted_ip);
    }
}

void worker_session_closed(struct wlistener *wl, const struct net_addr *client, int counted_ip)
{
    struct worker *w = wl->w;
    admit_release(wl, client, counted_ip);
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
        .max_inflight = wl->cfg->resolve_max_inflight,
    };
    wl->resolver = resolver_new(wl->w->loop, &o, err, sizeof(err));
    if (!wl->resolver) log_error("listener=%s resolver: %s", wl->cfg->name, err);
    return wl->resolver;
}

/* ---- drain and stop ---- */

void worker_listener_close_sockets(struct wlistener *wl)
{
    struct worker *w = wl->w;
    for (size_t j = 0; j < wl->nsocks; j++) {
        struct wsocket *ws = &wl->socks[j];
        loop_timer_cancel(w->loop, &ws->pause_timer);
        loop_io_del(w->loop, &ws->io);
        close(ws->fd);
        ws->fd = -1;
    }
    wl->nsocks = 0;
}

static void close_listen_sockets(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) worker_listener_close_sockets(&w->listeners[i]);
    for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next) worker_listener_close_sockets(wl);
}

static void drain_timeout_cb(struct loop *l, struct loop_timer *t)
{
    struct worker *w = t->owner;
    w->drain_closed += w->nsessions;
    sess_close_all(w, END_DRAIN);
    loop_stop(l);
}

/* Runs on the worker's thread when main pokes it with loop_wake(). */
static void wake_hook(struct loop *l, void *arg)
{
    struct worker *w = arg;
    wcmd_run(w);
    int mode = __atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE);
    if (mode == 0) return;
    if (!w->draining) {
        w->draining = 1;
        close_listen_sockets(w);
        loop_timer_arm_in(l, &w->drain_timer, w->cfg->drain_timeout_ms);
    }
    if (mode == 2 || w->nsessions == 0) {
        w->drain_closed += w->nsessions;
        sess_close_all(w, END_DRAIN);
        loop_stop(l);
    }
}

/* ---- setup ---- */

/* Per-worker balancer state over the listener's servers. With active checks
 * on, connect failures also count (passive ejection), since checks are what
 * bring a server back. */
int worker_listener_rebalance(struct wlistener *wl, char *err, size_t errlen)
{
    struct worker *w = wl->w;
    const struct listener_cfg *lc = wl->cfg;
    const struct health_cfg *hc = cfg_effective_health(lc);
    for (size_t i = 0; i < lc->nupstreams; i++) {
        char name[300];
        const struct upstream_cfg *u = &lc->upstreams[i];
        struct lb_server *s = &wl->lb_servers[i];
        s->weight = u->weight;
        s->backup = (uint8_t)u->backup;
        s->maxconn = u->maxconn;
        snprintf(name, sizeof(name), "%s:%u", u->hp.host, u->hp.port);
        s->key = lb_key(name);
    }
    if (lb_group_init(&wl->lb, wl->lb_servers, lc->nupstreams, cfg_balance_names[cfg_effective_balance(lc)],
                      err, errlen) < 0)
        return -1;
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) seed = clock_now_ms() ^ (uint64_t)w->id;
    lb_group_seed(&wl->lb, seed);
    wl->lb.rise = hc->rise ? hc->rise : 2;
    wl->lb.fall = hc->fall ? hc->fall : 3;
    wl->lb.passive = hc->interval_ms != 0;
    return 0;
}

/* One checker per listener, on worker 0; results reach every worker
 * through the shared array (health_sync before each pick). */
static int start_health(struct worker *w, struct wlistener *wl, char *err, size_t errlen)
{
    const struct listener_cfg *lc = wl->cfg;
    const struct health_cfg *hc = cfg_effective_health(lc);
    struct host_port hp[CFG_MAX_UPSTREAMS];
    struct resolver *r;
    if (lc->mode != MODE_RELAY || hc->interval_ms == 0) return 0;
    wl->sh->checks_on = 1;
    if (w->id != 0) return 0;
    if (!(r = worker_resolver(wl))) {
        snprintf(err, errlen, "listener %s: cannot create a resolver for health checks", lc->name);
        return -1;
    }
    for (size_t i = 0; i < lc->nupstreams; i++) hp[i] = lc->upstreams[i].hp;
    struct health_opts o = {
        .interval_ms = hc->interval_ms, .timeout_ms = hc->timeout_ms, .rise = hc->rise, .fall = hc->fall,
        .send = hc->send[0] ? hc->send : NULL, .send_len = strlen(hc->send),
        .expect = hc->expect[0] ? hc->expect : NULL, .prefer_ipv6 = lc->prefer_ipv6,
    };
    wl->hc = health_start(w->loop, r, lc->group ? lc->group->name : lc->name, hp, lc->nupstreams,
                          wl->sh->health, &o, err, errlen);
    return wl->hc ? 0 : -1;
}

int worker_listener_setup(struct worker *w, struct wlistener *wl, const struct listener_cfg *lc,
                          struct listener_shared *sh, char *err, size_t errlen)
{
    wl->w = w;
    wl->cfg = lc;
    wl->sh = sh;
    loop_timer_init(&wl->queue_timer, connect_queue_run, wl);
    if (lc->mode == MODE_RELAY && worker_listener_rebalance(wl, err, errlen) < 0) return -1;
    wl->pool = ss_pool_new(wl);
    return 0;
}

int worker_listener_add_socket(struct wlistener *wl, int fd)
{
    struct wsocket *ws = &wl->socks[wl->nsocks];
    if (wl->nsocks == CFG_MAX_LISTEN) {
        errno = ENOSPC;
        return -1;
    }
    ws->wl = wl;
    ws->io.fd = -1;
    ws->fd = fd;
    loop_timer_init(&ws->pause_timer, resume_cb, ws);
    if (loop_io_add(wl->w->loop, &ws->io, fd, LOOP_READ, accept_cb, ws) < 0) {
        ws->fd = -1;
        return -1;
    }
    wl->nsocks++;
    return 0;
}

void worker_listener_release(struct wlistener *wl)
{
    if (!wl->w) return;           /* never set up: worker_init failed before it */
    health_stop(wl->hc);          /* before its resolver goes */
    wl->hc = NULL;
    ss_pool_free(wl->pool);
    wl->pool = NULL;
    loop_timer_cancel(wl->w->loop, &wl->queue_timer);
    if (wl->resolver) resolver_free(wl->resolver);
    wl->resolver = NULL;
}

/* The listening sockets bind_listeners() made: for listener i, address j
 * and worker w, at [(i * CFG_MAX_LISTEN + j) * nworkers + w]; -1 once taken. */
struct listen_fds {
    int *fd;
    unsigned nworkers;
};

static int *listen_fd(const struct listen_fds *lf, size_t i, size_t j, unsigned w)
{
    return &lf->fd[(i * CFG_MAX_LISTEN + j) * lf->nworkers + w];
}

/* One SO_REUSEPORT group per listen address, a socket for each worker. Port
 * 0 becomes the port the kernel picked, in cfg, so that every worker shares
 * it and the announcement shows it. */
static int bind_listeners(struct ferry_cfg *cfg, const struct listen_fds *lf, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct listener_cfg *lc = &cfg->listeners[i];
        for (size_t j = 0; j < lc->nlisten; j++)
            if (sock_listen_group(&lc->listen[j], (int)lc->backlog, lf->nworkers, listen_fd(lf, i, j, 0),
                                  &lc->listen[j], err, errlen) < 0)
                return -1;
    }
    return 0;
}

static int listener_init(struct worker *w, size_t li, const struct listen_fds *lf, char *err, size_t errlen)
{
    struct wlistener *wl = &w->listeners[li];
    const struct listener_cfg *lc = &w->cfg->listeners[li];
    if (worker_listener_setup(w, wl, lc, &w->shared[li], err, errlen) < 0) return -1;
    for (size_t j = 0; j < lc->nlisten; j++) {
        int *fd = listen_fd(lf, li, j, (unsigned)w->id);
        if (worker_listener_add_socket(wl, *fd) < 0) {
            snprintf(err, errlen, "epoll: %s", strerror(errno));
            return -1;            /* workers_create closes what no worker took */
        }
        *fd = -1;                 /* the worker's now */
    }
    return start_health(w, wl, err, errlen);
}

static int worker_init(struct worker *w, int id, const struct ferry_cfg *cfg, struct listener_shared *shared,
                       const struct listen_fds *lf, char *err, size_t errlen)
{
    w->id = id;
    w->cfg = cfg;
    w->shared = shared;
    wcmd_queue_init(&w->cmdq);
    buf_pool_init(&w->bufs, BUF_SIZE, POOL_MAX_FREE);
    kpipe_pool_init(&w->pipes, POOL_MAX_FREE, KPIPE_SIZE);
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
        if (listener_init(w, i, lf, err, errlen) < 0) return -1;
    return 0;
}

static void worker_destroy(struct worker *w)
{
    if (w->loop) {
        sess_close_all(w, END_DRAIN);
        admit_close_all(w);
        close_listen_sockets(w);
        for (size_t i = 0; i < w->nlisteners; i++) worker_listener_release(&w->listeners[i]);
        for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next) worker_listener_release(wl);
        loop_free(w->loop);   /* runs the deferred frees */
    }
    while (w->dyn) {
        struct wlistener *next = w->dyn->dyn_next;
        free(w->dyn);
        w->dyn = next;
    }
    wcmd_close(w);            /* nothing can be waiting: the API is stopped first */
    wcmd_queue_destroy(&w->cmdq);
    free(w->listeners);
    buf_pool_destroy(&w->bufs);
    kpipe_pool_destroy(&w->pipes);
}

int worker_shared_init(struct listener_shared *sh, const struct listener_cfg *lc, char *err, size_t errlen)
{
    if (admit_shared_init(sh, lc, err, errlen) < 0) return -1;
    toxic_slot_init(&sh->toxics);
    if (!lc->ntoxics) return 0;
    struct toxic_set *set = toxic_set_new(lc->toxics, lc->ntoxics);
    if (!set) {
        snprintf(err, errlen, "out of memory");
        worker_shared_free(sh);
        return -1;
    }
    toxic_slot_publish(&sh->toxics, set);
    return 0;
}

void worker_shared_free(struct listener_shared *sh)
{
    admit_shared_free(sh);
    toxic_slot_destroy(&sh->toxics);
}

static void shared_free(struct listener_shared *sh, size_t n)
{
    for (size_t i = 0; sh && i < n; i++) worker_shared_free(&sh[i]);
    free(sh);
}

struct worker *workers_create(struct ferry_cfg *cfg, unsigned n, char *err, size_t errlen)
{
    struct worker *ws = calloc(n, sizeof(*ws));
    struct listener_shared *sh = calloc(cfg->nlisteners, sizeof(*sh));
    unsigned nfds = (unsigned)(cfg->nlisteners * CFG_MAX_LISTEN * n);
    struct listen_fds lf = { .fd = malloc((nfds ? nfds : 1) * sizeof(int)), .nworkers = n };
    size_t nsh = 0;
    if (!ws || !sh || !lf.fd) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < nfds; i++) lf.fd[i] = -1;
    if (bind_listeners(cfg, &lf, err, errlen) < 0) goto fail;
    for (; nsh < cfg->nlisteners; nsh++)
        if (worker_shared_init(&sh[nsh], &cfg->listeners[nsh], err, errlen) < 0) goto fail;
    for (unsigned i = 0; i < n; i++) {
        if (worker_init(&ws[i], (int)i, cfg, sh, &lf, err, errlen) < 0) {
            for (unsigned j = 0; j <= i; j++) worker_destroy(&ws[j]);
            goto fail;
        }
    }
    free(lf.fd);
    return ws;
fail:
    if (lf.fd) sock_close_fds(lf.fd, nfds);
    free(lf.fd);
    shared_free(sh, nsh);
    free(ws);
    return NULL;
}

static void flush_logs(struct loop *l, void *arg)
{
    (void)l;
    (void)arg;
    log_flush();
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    /* Session lines go out once per loop iteration, not one write each. */
    if (log_batch_begin() == 0) loop_set_before_sleep(w->loop, flush_logs, NULL);
    if (loop_run(w->loop) < 0) {
        log_error("worker %d: event loop failed: %s", w->id, strerror(errno));
        w->exit_code = 1;
    }
    log_batch_end();
    wcmd_close(w);    /* the API must not wait for a loop that no longer runs */
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
    if (n) shared_free(ws[0].shared, ws[0].nlisteners);
    free(ws);
}
