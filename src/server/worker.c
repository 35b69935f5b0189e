/* worker.c - see worker.h. */
#include "server/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/sock.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "server/admit.h"
#include "server/proxyin.h"

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
    loop_io_want(wl->w->rw.loop, &ws->io, 0);
    loop_timer_arm_in(wl->w->rw.loop, &ws->pause_timer, ACCEPT_PAUSE_MS);
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
        if (!wl->cfg->accept_proxy) worker_admit(wl, fd, &peer);
        else if (admit_proxy_source(wl->cfg, &peer)) proxyin_start(wl, fd, &peer);   /* admitted once its header names the client */
        else admit_refuse(wl, fd, &peer, "denied");    /* not one of --accept-proxy-from */
    }
}

void worker_admit(struct wlistener *wl, int fd, const struct net_addr *client)
{
    int counted_ip;
    const char *refused = admit_client(wl, client, &counted_ip);
    if (refused) {
        admit_refuse(wl, fd, client, refused);
        return;
    }
    wl->nsess++;                /* before: a session may end inside accept */
    if (wl->handler->accept(wl->rl, fd, client, counted_ip) < 0) {
        wl->nsess--;
        admit_release(wl, client, counted_ip);
    }
}

/* The handler's `closed`: a session of the listener has gone (and left the
 * worker's count). */
static void session_closed(void *owner, const struct net_addr *client, int counted_ip)
{
    struct wlistener *wl = owner;
    struct server_worker *w = wl->w;
    admit_release(wl, client, counted_ip);
    wl->nsess--;
    /* Released from a timer, never from inside a session's close. */
    if (wl->retiring && wl->nsess == 0) loop_timer_arm_in(w->rw.loop, &wl->retire_timer, 0);
    if (w->draining && w->rw.nsessions == 0) loop_stop(w->rw.loop);
}

/* The handler's `admit`: a client that came inside a connection (a mux
 * stream) is admitted like one that connected. */
static const char *stream_admit(void *owner, const struct net_addr *client, int *counted_ip)
{
    struct wlistener *wl = owner;
    const char *refused = admit_client(wl, client, counted_ip);
    if (!refused) wl->nsess++;
    return refused;
}

/* ---- drain and stop ---- */

void worker_listener_close_sockets(struct wlistener *wl)
{
    struct server_worker *w = wl->w;
    for (size_t j = 0; j < wl->nsocks; j++) {
        struct wsocket *ws = &wl->socks[j];
        if (ws->fd < 0) continue;          /* taken by a reload */
        loop_timer_cancel(w->rw.loop, &ws->pause_timer);
        loop_io_del(w->rw.loop, &ws->io);
        close(ws->fd);
        ws->fd = -1;
    }
    wl->nsocks = 0;
    proxyin_close_listener(wl);
}

static void close_sessions(struct wlistener *wl)
{
    if (wl->rl) wl->handler->close_sessions(wl->rl, RLISTENER_CLOSE_DRAIN);
}

int worker_listener_take_socket(struct wlistener *wl, const struct net_addr *a)
{
    for (size_t j = 0; j < wl->nsocks; j++) {
        struct wsocket *ws = &wl->socks[j];
        struct net_addr bound;
        bound.len = sizeof(bound.u);
        if (ws->fd < 0 || getsockname(ws->fd, &bound.u.sa, &bound.len) < 0 || !net_addr_equal(&bound, a)) continue;
        int fd = ws->fd;
        loop_timer_cancel(wl->w->rw.loop, &ws->pause_timer);
        loop_io_del(wl->w->rw.loop, &ws->io);
        ws->fd = -1;               /* its loop_io stays where it is: this batch may point there */
        return fd;
    }
    return -1;
}

static void unlink_dyn(struct server_worker *w, struct wlistener *wl)
{
    for (struct wlistener **pp = &w->dyn; *pp; pp = &(*pp)->dyn_next) {
        if (*pp != wl) continue;
        *pp = wl->dyn_next;
        loop_defer_free(w->rw.loop, wl, free);   /* its sockets' loop_io live inside it */
        return;
    }
}

/* The drain deadline, or its last session gone: closes what is left and
 * releases the listener. */
static void retire_cb(struct loop *l, struct loop_timer *t)
{
    struct wlistener *wl = t->owner;
    struct server_worker *w = wl->w;
    wlistener_retired_fn *done = wl->retired;
    void *arg = wl->retired_arg;
    (void)l;
    if (wl->nsess && log_enabled(LOG_ERROR))
        log_plain("listener=%s worker %d: reload drain over, closing %u session%s", wl->cfg->name, w->rw.id,
                  wl->nsess, wl->nsess == 1 ? "" : "s");
    wl->retiring = 0;           /* the closes below must not arm the timer again */
    close_sessions(wl);
    worker_listener_release(wl);
    unlink_dyn(w, wl);          /* a configured one stays in the array, released */
    done(arg);
}

void worker_listener_retire(struct wlistener *wl, unsigned drain_ms, wlistener_retired_fn *done, void *arg)
{
    worker_listener_close_sockets(wl);
    if (wl->handler->drain) wl->handler->drain(wl->rl);   /* a multiplexer's peers open no more streams */
    wl->retiring = 1;
    wl->retired = done;
    wl->retired_arg = arg;
    loop_timer_init(&wl->retire_timer, retire_cb, wl);
    loop_timer_arm_in(wl->w->rw.loop, &wl->retire_timer, wl->nsess ? drain_ms : 0);
}

static void close_listen_sockets(struct server_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) worker_listener_close_sockets(&w->listeners[i]);
    for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next) worker_listener_close_sockets(wl);
}

void worker_close_sessions(struct server_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) close_sessions(&w->listeners[i]);
    for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next) close_sessions(wl);
}

static void drain_listener(struct wlistener *wl)
{
    if (wl->rl && wl->handler->drain) wl->handler->drain(wl->rl);
}

static void drain_listeners(struct server_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) drain_listener(&w->listeners[i]);
    for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next) drain_listener(wl);
}

static void drain_timeout_cb(struct loop *l, struct loop_timer *t)
{
    struct server_worker *w = t->owner;
    w->drain_closed += w->rw.nsessions;
    worker_close_sessions(w);
    loop_stop(l);
}

/* Runs on the worker's thread when main pokes it with loop_wake(). */
static void wake_hook(struct loop *l, void *arg)
{
    struct server_worker *w = arg;
    wcmd_run(&w->cmdq);
    int mode = __atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE);
    if (mode == 0) return;
    if (!w->draining) {
        w->draining = 1;
        close_listen_sockets(w);
        drain_listeners(w);
        loop_timer_arm_in(l, &w->drain_timer, w->cfg->drain_timeout_ms);
    }
    if (mode == 2 || w->rw.nsessions == 0) {
        w->drain_closed += w->rw.nsessions;
        worker_close_sessions(w);
        loop_stop(l);
    }
}

/* ---- setup ---- */

int worker_listener_setup(struct server_worker *w, struct wlistener *wl, const struct listener_cfg *lc,
                          struct listener_shared *sh, char *err, size_t errlen)
{
    wl->w = w;
    wl->cfg = lc;
    wl->sh = sh;
    wl->handler = sh->handler;
    wl->rl = wl->handler->attach(&w->rw, lc, &sh->relay, stream_admit, session_closed, wl, err, errlen);
    return wl->rl ? 0 : -1;
}

int worker_listener_retarget(struct wlistener *wl, const struct listener_cfg *lc, char *err, size_t errlen)
{
    if (wl->handler->retarget(wl->rl, lc, err, errlen) < 0) return -1;
    wl->cfg = lc;
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
    if (loop_io_add(wl->w->rw.loop, &ws->io, fd, LOOP_READ, accept_cb, ws) < 0) {
        ws->fd = -1;
        return -1;
    }
    wl->nsocks++;
    return 0;
}

void worker_listener_release(struct wlistener *wl)
{
    if (!wl->rl) return;          /* never set up: worker_init failed before it */
    wl->handler->detach(wl->rl);
    wl->rl = NULL;
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

static int listener_init(struct server_worker *w, size_t li, const struct listen_fds *lf, char *err, size_t errlen)
{
    struct wlistener *wl = &w->listeners[li];
    const struct listener_cfg *lc = &w->cfg->listeners[li];
    if (worker_listener_setup(w, wl, lc, &w->shared[li], err, errlen) < 0) return -1;
    for (size_t j = 0; j < lc->nlisten; j++) {
        int *fd = listen_fd(lf, li, j, (unsigned)w->rw.id);
        if (worker_listener_add_socket(wl, *fd) < 0) {
            snprintf(err, errlen, "epoll: %s", strerror(errno));
            return -1;            /* workers_create closes what no worker took */
        }
        *fd = -1;                 /* the worker's now */
    }
    return wl->handler->start(wl->rl, err, errlen);
}

static int worker_init(struct server_worker *w, int id, const struct ferry_cfg *cfg, struct listener_shared *shared,
                       const struct listen_fds *lf, char *err, size_t errlen)
{
    w->rw.id = id;
    w->cfg = cfg;
    w->shared = shared;
    buf_pool_init(&w->rw.bufs, BUF_SIZE, POOL_MAX_FREE);
    kpipe_pool_init(&w->rw.pipes, POOL_MAX_FREE, KPIPE_SIZE);
    w->rw.loop = loop_new();
    wcmd_queue_init(&w->cmdq, w->rw.loop, w);   /* even without a loop: worker_destroy closes it */
    if (!w->rw.loop) {
        snprintf(err, errlen, "cannot create event loop: %s", strerror(errno));
        return -1;
    }
    loop_timer_init(&w->drain_timer, drain_timeout_cb, w);
    loop_set_wake_hook(w->rw.loop, wake_hook, w);
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

static void worker_destroy(struct server_worker *w)
{
    if (w->rw.loop) {
        worker_close_sessions(w);
        admit_close_all(w);
        proxyin_close_all(w);
        close_listen_sockets(w);
        for (size_t i = 0; i < w->nlisteners; i++) worker_listener_release(&w->listeners[i]);
        for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next) worker_listener_release(wl);
        loop_free(w->rw.loop);   /* runs the deferred frees */
    }
    while (w->dyn) {
        struct wlistener *next = w->dyn->dyn_next;
        free(w->dyn);
        w->dyn = next;
    }
    wcmd_close(&w->cmdq);     /* nothing can be waiting: the API is stopped first */
    wcmd_queue_destroy(&w->cmdq);
    free(w->listeners);
    buf_pool_destroy(&w->rw.bufs);
    kpipe_pool_destroy(&w->rw.pipes);
}

int worker_shared_init(struct listener_shared *sh, const struct listener_cfg *lc, char *err, size_t errlen)
{
    if (!(sh->handler = relay_handler((enum ferry_mode)lc->mode))) {
        snprintf(err, errlen, "listener %s: no handler for its mode", lc->name);
        return -1;
    }
    if (admit_shared_init(sh, lc, err, errlen) < 0) return -1;
    if (sh->handler->shared_init(&sh->relay, lc, err, errlen) < 0) {
        admit_shared_free(sh);
        return -1;
    }
    return 0;
}

void worker_shared_free(struct listener_shared *sh)
{
    admit_shared_free(sh);
    sh->handler->shared_free(&sh->relay);
}

static void shared_free(struct listener_shared *sh, size_t n)
{
    for (size_t i = 0; sh && i < n; i++)
        if (!sh[i].freed) worker_shared_free(&sh[i]);
    free(sh);
}

struct server_worker *workers_create(struct ferry_cfg *cfg, unsigned n, char *err, size_t errlen)
{
    struct server_worker *ws = calloc(n, sizeof(*ws));
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
    struct server_worker *w = arg;
    metrics_thread_slot(w->rw.id);     /* this thread's own counter blocks */
    /* Session lines go out once per loop iteration, not one write each. */
    if (log_batch_begin() == 0) loop_set_before_sleep(w->rw.loop, flush_logs, NULL);
    if (loop_run(w->rw.loop) < 0) {
        log_error("worker %d: event loop failed: %s", w->rw.id, strerror(errno));
        w->exit_code = 1;
    }
    log_batch_end();
    wcmd_close(&w->cmdq);    /* the API must not wait for a loop that no longer runs */
    __atomic_fetch_sub(&running_workers, 1, __ATOMIC_RELEASE);
    return NULL;
}

int workers_start(struct server_worker *ws, unsigned n)
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

void workers_request_stop(struct server_worker *ws, unsigned n, int mode)
{
    for (unsigned i = 0; i < n; i++) {
        __atomic_store_n(&ws[i].stop_requested, mode, __ATOMIC_RELEASE);
        loop_wake(ws[i].rw.loop);
    }
}

void workers_join_and_free(struct server_worker *ws, unsigned n)
{
    for (unsigned i = 0; i < n; i++) pthread_join(ws[i].thread, NULL);
    for (unsigned i = 0; i < n; i++) worker_destroy(&ws[i]);
    if (n) shared_free(ws[0].shared, ws[0].nlisteners);
    free(ws);
}
