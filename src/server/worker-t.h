/* worker-t.h - types of the per-thread hub: a worker and its listeners.
 *
 * A worker owns one loop, its own SO_REUSEPORT listening socket for every
 * configured listen address, per-thread pools and the sessions it accepted
 * (the last three lent to relay as `struct worker`, relay/handler.h).
 * Nothing here is shared between threads except `cfg` (read-only),
 * `stop_requested` (atomic) and `cmdq` (commands from the API thread).
 */
#ifndef FERRY_WORKER_T_H
#define FERRY_WORKER_T_H

#include <pthread.h>
#include <stdint.h>

#include "config/config.h"
#include "core/loop.h"
#include "core/wcmd.h"
#include "policy/limits.h"
#include "relay/handler.h"

struct refusal;
struct proxyin;
struct server_worker;

/* One listen socket of one listener, on one worker. */
struct wsocket {
    struct loop_io io;
    struct wlistener *wl;
    struct loop_timer pause_timer;   /* accept paused after EMFILE */
    int fd;
};

/* State of one listener shared by all workers: exact limits need shared
 * counters (SO_REUSEPORT spreads one client's connections over threads);
 * relay's part holds health and the toxic slot. */
struct listener_shared {
    unsigned sessions;               /* atomic */
    pthread_mutex_t lock;            /* guards ipc and rate */
    struct ipcount ipc;
    struct ratelimit rate;
    int has_ipc, has_rate;
    const struct listener_handler *handler;   /* the listener mode's (relay/handler.h) */
    struct relay_shared relay;
    int freed;                       /* by a reload that retired it (server/reload.c): not again at exit */
};

typedef void wlistener_retired_fn(void *arg);

/* A configured listener as seen by one worker: its sockets and admission
 * here, everything else in its mode's relay state, reached only through
 * `handler` (nginx's ls->handler). */
struct wlistener {
    struct server_worker *w;
    const struct listener_cfg *cfg;
    struct wsocket socks[CFG_MAX_LISTEN];
    size_t nsocks;
    struct listener_shared *sh;
    const struct listener_handler *handler;
    struct relay_listener *rl;       /* opaque: the handler's */
    unsigned nsess;                  /* its sessions on this worker (admitted, not closed yet) */
    /* Retired by a reload (worker_listener_retire): no sockets; once its
     * sessions are gone, or at the deadline, it is released and
     * retired(retired_arg) is called. */
    int retiring;
    struct loop_timer retire_timer;
    wlistener_retired_fn *retired;
    void *retired_arg;
    /* Listeners added at run time (HTTP API) are allocated one by one and
     * linked here, so that their sockets' loop_io never move. */
    struct wlistener *dyn_next;
};

struct server_worker {
    struct worker rw;                /* loop, pools, sessions: lent to relay */
    pthread_t thread;
    const struct ferry_cfg *cfg;
    struct wlistener *listeners;     /* configured at start */
    size_t nlisteners;
    struct wlistener *dyn;           /* added at run time, linked by dyn_next */
    struct listener_shared *shared;  /* [nlisteners], owned by worker 0 */

    struct refusal *refusals;        /* refused SOCKS clients awaiting their answer */
    struct proxyin *proxyins;        /* --accept-proxy: connections awaiting their header */

    int draining;
    unsigned drain_closed;           /* sessions the drain ended (deadline or second signal) */
    int stop_requested;              /* 1 drain, 2 stop now; set by main via __atomic */
    struct loop_timer drain_timer;
    int exit_code;
    struct wcmd_queue cmdq;          /* run by the wake hook (core/wcmd.h) */
};

#endif
