/* worker-t.h - types of the per-thread hub: a worker and its listeners.
 *
 * A worker owns one loop, its own SO_REUSEPORT listening socket for every
 * configured listen address, per-thread pools and the sessions it accepted.
 * Nothing here is shared between threads except `cfg` (read-only),
 * `stop_requested` (atomic) and `cmdq` (commands from the API thread).
 */
#ifndef FERRY_WORKER_T_H
#define FERRY_WORKER_T_H

#include <pthread.h>
#include <stdint.h>

#include "buf/buffer.h"
#include "buf/kpipe.h"
#include "config/config.h"
#include "core/loop.h"
#include "core/wcmd.h"
#include "policy/limits.h"
#include "stage/toxic.h"
#include "upstream/balancer.h"
#include "upstream/health.h"

struct session;
struct refusal;
struct ss_pool;
struct resolver;
struct worker;

/* One listen socket of one listener, on one worker. */
struct wsocket {
    struct loop_io io;
    struct wlistener *wl;
    struct loop_timer pause_timer;   /* accept paused after EMFILE */
    int fd;
};

/* State of one listener shared by all workers: exact limits need shared
 * counters (SO_REUSEPORT spreads one client's connections over threads),
 * and health is checked once, read by everyone. */
struct listener_shared {
    unsigned sessions;               /* atomic */
    pthread_mutex_t lock;            /* guards ipc and rate */
    struct ipcount ipc;
    struct ratelimit rate;
    int has_ipc, has_rate;
    struct health_shared health[CFG_MAX_UPSTREAMS];
    int checks_on;
    struct toxic_slot toxics;        /* --toxic and the API; sessions read it */
};

/* A configured listener as seen by one worker. */
struct wlistener {
    struct worker *w;
    const struct listener_cfg *cfg;
    struct wsocket socks[CFG_MAX_LISTEN];
    size_t nsocks;
    struct lb_group lb;              /* per-thread balancer state */
    struct lb_server lb_servers[CFG_MAX_UPSTREAMS];
    struct resolver *resolver;       /* created on first use */
    struct listener_shared *sh;
    unsigned hc_seen[CFG_MAX_UPSTREAMS];   /* health generations applied to lb */
    struct health_checker *hc;       /* worker 0 only */
    struct ss_pool *pool;            /* ss-local --pool */
    /* Clients waiting for a server slot (every server at maxconn), FIFO. */
    struct session *qhead, *qtail;
    unsigned qlen;
    struct loop_timer queue_timer;   /* runs the queue after a slot frees */
    /* Listeners added at run time (HTTP API) are allocated one by one and
     * linked here, so sessions' `wl` pointers never move. */
    struct wlistener *dyn_next;
};

struct worker {
    int id;
    pthread_t thread;
    struct loop *loop;
    const struct ferry_cfg *cfg;
    struct wlistener *listeners;     /* configured at start */
    size_t nlisteners;
    struct wlistener *dyn;           /* added at run time, linked by dyn_next */
    struct listener_shared *shared;  /* [nlisteners], owned by worker 0 */

    struct buf_pool bufs;
    struct kpipe_pool pipes;

    struct session *sessions;        /* doubly linked, for drain */
    struct refusal *refusals;        /* refused SOCKS clients awaiting their answer */
    unsigned nsessions;

    int draining;
    unsigned drain_closed;           /* sessions the drain ended (deadline or second signal) */
    int stop_requested;              /* 1 drain, 2 stop now; set by main via __atomic */
    struct loop_timer drain_timer;
    int exit_code;
    struct wcmd_queue cmdq;          /* run by the wake hook (core/wcmd.h) */
};

#endif
