/* runtime.c - see runtime.h. Every *_cmd function runs on a worker's thread. */
#include "server/runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/wcmd.h"
#include "server/worker.h"
#include "net/sock.h"
#include "obs/log.h"
#include "relay/session.h"

static struct wlistener *find_wl(struct worker *w, const struct listener_shared *sh)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].sh == sh) return &w->listeners[i];
    for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next)
        if (wl->sh == sh) return wl;
    return NULL;
}

/* What one command carries to every worker. */
struct rt_op {
    struct listener_shared *sh;
    const struct listener_cfg *lc;
    int *fds;            /* rt_start: [worker id]; a worker sets its entry to -1 once it owns it */
    int failed;          /* atomic: some worker could not do it */
    char err[256];       /* the first failure's reason, written by that worker only */
};

static void op_fail(struct rt_op *op, const char *why)
{
    if (!__atomic_exchange_n(&op->failed, 1, __ATOMIC_ACQ_REL)) snprintf(op->err, sizeof(op->err), "%s", why);
}

static void attach_cmd(struct worker *w, void *arg)
{
    struct rt_op *op = arg;
    char err[256];
    struct wlistener *wl = calloc(1, sizeof(*wl));
    if (!wl) {
        op_fail(op, "out of memory");
        return;
    }
    if (worker_listener_setup(w, wl, op->lc, op->sh, err, sizeof(err)) < 0) {
        worker_listener_release(wl);
        free(wl);
        op_fail(op, err);
        return;
    }
    wl->dyn_next = w->dyn;
    w->dyn = wl;
}

static void start_cmd(struct worker *w, void *arg)
{
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    int fd = op->fds[w->id];
    /* A draining worker has closed its listening sockets for good. */
    if (!wl || w->draining) return;
    if (worker_listener_add_socket(wl, fd) < 0) {
        log_error("listener=%s worker %d: cannot listen: %s", wl->cfg->name, w->id, strerror(errno));
        return;
    }
    op->fds[w->id] = -1;
}

static void close_sessions(struct worker *w, struct wlistener *wl)
{
    struct session *s = w->sessions, *next;
    for (; s; s = next) {
        next = s->next;   /* sess_close unlinks s, and only s */
        if (s->wl == wl) sess_close(s, END_API);
    }
    /* Closing released server slots, which may have armed the queue run. */
    loop_timer_cancel(w->loop, &wl->queue_timer);
}

static void stop_cmd(struct worker *w, void *arg)
{
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    if (!wl) return;
    worker_listener_close_sockets(wl);
    close_sessions(w, wl);
}

static void detach_cmd(struct worker *w, void *arg)
{
    struct rt_op *op = arg;
    struct wlistener **pp = &w->dyn;
    while (*pp && (*pp)->sh != op->sh) pp = &(*pp)->dyn_next;
    struct wlistener *wl = *pp;
    if (!wl) return;
    worker_listener_close_sockets(wl);
    close_sessions(w, wl);
    worker_listener_release(wl);
    *pp = wl->dyn_next;
    /* Its sockets' loop_io live inside it: events of this batch may still
     * point there. */
    loop_defer_free(w->loop, wl, free);
}

static void retarget_cmd(struct worker *w, void *arg)
{
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    char err[256];
    if (!wl) return;
    const struct listener_cfg *old = wl->cfg;
    wl->cfg = op->lc;
    /* The balancer reads the server list: build it again (the listener is
     * stopped, so no session holds a server slot). Nothing else of the
     * listener depends on the config's addresses. */
    if (op->lc->mode == MODE_RELAY && worker_listener_rebalance(wl, err, sizeof(err)) < 0) {
        op_fail(op, err);
        wl->cfg = old;
        (void)worker_listener_rebalance(wl, err, sizeof(err));
    }
}

static void refresh_cmd(struct worker *w, void *arg)
{
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    if (!wl) return;
    struct session *s = w->sessions, *next;
    for (; s; s = next) {
        next = s->next;   /* a refresh may close s (out of memory) */
        if (s->wl == wl) sess_toxics_refresh(s);
    }
}

/* Runs fn on every worker; 0, or -1 with the first failure's reason. */
static int run(const struct rt *rt, wcmd_fn *fn, struct rt_op *op, char *err, size_t errlen)
{
    op->failed = 0;
    op->err[0] = '\0';
    wcmd_run_all(rt->ws, rt->n, fn, op);
    if (!op->failed) return 0;   /* wcmd_run_all's lock orders the workers' writes before this */
    snprintf(err, errlen, "%s", op->err);
    return -1;
}

int rt_attach(const struct rt *rt, const struct listener_cfg *lc, struct listener_shared *sh,
              char *err, size_t errlen)
{
    struct rt_op op = { .sh = sh, .lc = lc };
    if (run(rt, attach_cmd, &op, err, errlen) == 0) return 0;
    rt_detach(rt, sh);      /* the workers that did attach it */
    return -1;
}

void rt_start(const struct rt *rt, struct listener_shared *sh, int *fds)
{
    struct rt_op op = { .sh = sh, .fds = fds };
    wcmd_run_all(rt->ws, rt->n, start_cmd, &op);   /* cannot fail */
    sock_close_fds(fds, rt->n);   /* the ones no worker took */
}

void rt_stop(const struct rt *rt, struct listener_shared *sh)
{
    struct rt_op op = { .sh = sh };
    wcmd_run_all(rt->ws, rt->n, stop_cmd, &op);   /* cannot fail */
}

int rt_retarget(const struct rt *rt, struct listener_shared *sh, const struct listener_cfg *lc,
                char *err, size_t errlen)
{
    struct rt_op op = { .sh = sh, .lc = lc };
    return run(rt, retarget_cmd, &op, err, errlen);
}

void rt_detach(const struct rt *rt, struct listener_shared *sh)
{
    struct rt_op op = { .sh = sh };
    wcmd_run_all(rt->ws, rt->n, detach_cmd, &op);   /* cannot fail */
}

void rt_refresh_toxics(const struct rt *rt, struct listener_shared *sh)
{
    struct rt_op op = { .sh = sh };
    wcmd_run_all(rt->ws, rt->n, refresh_cmd, &op);   /* cannot fail */
}
