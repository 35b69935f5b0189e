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

static struct wlistener *find_wl(struct server_worker *w, const struct listener_shared *sh)
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

static void attach_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
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

static void start_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    int fd = op->fds[w->rw.id];
    /* A draining worker has closed its listening sockets for good. */
    if (!wl || w->draining) return;
    if (worker_listener_add_socket(wl, fd) < 0) {
        log_error("listener=%s worker %d: cannot listen: %s", wl->cfg->name, w->rw.id, strerror(errno));
        return;
    }
    op->fds[w->rw.id] = -1;
}

static void stop_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    if (!wl) return;
    worker_listener_close_sockets(wl);
    wl->handler->close_sessions(wl->rl, RLISTENER_CLOSE_API);
}

static void detach_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct rt_op *op = arg;
    struct wlistener **pp = &w->dyn;
    while (*pp && (*pp)->sh != op->sh) pp = &(*pp)->dyn_next;
    struct wlistener *wl = *pp;
    if (!wl) return;
    worker_listener_close_sockets(wl);
    wl->handler->close_sessions(wl->rl, RLISTENER_CLOSE_API);
    worker_listener_release(wl);
    *pp = wl->dyn_next;
    /* Its sockets' loop_io live inside it: events of this batch may still
     * point there. */
    loop_defer_free(w->rw.loop, wl, free);
}

static void retarget_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    char err[256];
    if (!wl) return;
    if (worker_listener_retarget(wl, op->lc, err, sizeof(err)) < 0) op_fail(op, err);
}

static void refresh_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct rt_op *op = arg;
    struct wlistener *wl = find_wl(w, op->sh);
    if (wl) wl->handler->refresh_toxics(wl->rl);
}

static struct wcmd_queue *queue_at(void *set, unsigned i)
{
    struct server_worker *ws = set;
    return &ws[i].cmdq;
}

static void run_all(const struct rt *rt, wcmd_fn *fn, struct rt_op *op)
{
    wcmd_run_all(queue_at, rt->ws, rt->n, fn, op);
}

/* Runs fn on every worker; 0, or -1 with the first failure's reason. */
static int run(const struct rt *rt, wcmd_fn *fn, struct rt_op *op, char *err, size_t errlen)
{
    op->failed = 0;
    op->err[0] = '\0';
    run_all(rt, fn, op);
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
    run_all(rt, start_cmd, &op);   /* cannot fail */
    sock_close_fds(fds, rt->n);   /* the ones no worker took */
}

void rt_stop(const struct rt *rt, struct listener_shared *sh)
{
    struct rt_op op = { .sh = sh };
    run_all(rt, stop_cmd, &op);   /* cannot fail */
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
    run_all(rt, detach_cmd, &op);   /* cannot fail */
}

void rt_refresh_toxics(const struct rt *rt, struct listener_shared *sh)
{
    struct rt_op op = { .sh = sh };
    run_all(rt, refresh_cmd, &op);   /* cannot fail */
}
