/* worker-t.h - types of the per-thread hub: a worker and its listeners.
 *
 * A worker owns one loop, its own SO_REUSEPORT listening socket for every
 * configured listen address, per-thread pools and the sessions it accepted.
 * Nothing here is shared between threads except `cfg` (read-only) and
 * `stop_requested` (atomic).
 */
#ifndef FERRY_WORKER_T_H
#define FERRY_WORKER_T_H

#include <pthread.h>
#include <stdint.h>

#include "buf/buffer.h"
#include "buf/kpipe.h"
#include "config/config.h"
#include "core/loop.h"
#include "upstream/balancer.h"

struct session;
struct resolver;
struct worker;

/* One listen socket of one listener, on one worker. */
struct wsocket {
    struct loop_io io;
    struct wlistener *wl;
    struct loop_timer pause_timer;   /* accept paused after EMFILE */
    int fd;
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
    unsigned nsessions;
    int paused_full;                 /* accept paused by maxconn */
};

struct worker {
    int id;
    pthread_t thread;
    struct loop *loop;
    const struct ferry_cfg *cfg;
    struct wlistener *listeners;
    size_t nlisteners;

    struct buf_pool bufs;
    struct kpipe_pool pipes;

    struct session *sessions;        /* doubly linked, for drain */
    unsigned nsessions;

    int draining;
    int stop_requested;              /* 1 drain, 2 stop now; set by main via __atomic */
    struct loop_timer drain_timer;
    int exit_code;
};

#endif
