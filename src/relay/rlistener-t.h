/* rlistener-t.h - types of relay's per-thread hub: what a session reaches
 * through `s->wl`.
 *
 * A session lives on one worker (`s->wl->w`: loop, pools, session list,
 * lent by the server, relay/handler.h) and belongs to one listener, whose
 * per-thread relay state is `struct relay_listener`: made by the listener
 * mode's handler, held by the server only as an opaque pointer.
 */
#ifndef FERRY_RLISTENER_T_H
#define FERRY_RLISTENER_T_H

#include "core/loop.h"
#include "relay/handler.h"
#include "upstream/balancer.h"

struct session;
struct ss_pool;
struct resolver;
struct lua_engine;
struct mux_in;
struct mux_pool;
struct discoverer;
struct rl_disc;
struct ss_udp_server;

/* Distinct lua toxic scripts a listener runs at once, per worker. */
#define RLISTENER_LUA_TOXICS 4

/* A configured listener's relay state on one worker. */
struct relay_listener {
    struct worker *w;
    const struct listener_cfg *cfg;
    struct relay_shared *sh;
    struct lb_group lb;              /* per-thread balancer state */
    struct lb_server lb_servers[CFG_MAX_UPSTREAMS];
    struct resolver *resolver;       /* created on first use */
    unsigned hc_seen[CFG_MAX_UPSTREAMS];   /* health generations applied to lb */
    struct health_checker *hc;       /* worker 0 only */
    struct rl_disc *disc;            /* servers from DNS: this worker's copy of the slots */
    struct discoverer *discoverer;   /* worker 0 only, with its own resolver: */
    struct resolver *disc_resolver;
    struct ss_pool *pool;            /* ss-local --pool */
    struct lua_engine *lua;          /* --filter: this worker's Lua state */
    struct {                         /* lua toxics' states, made on first use */
        char file[256];
        struct lua_engine *e;
    } lua_toxics[RLISTENER_LUA_TOXICS];
    /* Clients waiting for a server slot (every server at maxconn), FIFO. */
    struct session *qhead, *qtail;
    unsigned qlen;
    struct loop_timer queue_timer;   /* runs the queue after a slot frees */
    struct mux_in *mux_in;           /* mux-server: the yamux connections accepted */
    struct mux_pool *mux_pool;       /* mux-local: the connections to the mux-server */
    struct ss_udp_server *ss_udp;    /* ss-server -u: worker 0 only */
    rlistener_admit_fn *admit;
    rlistener_closed_fn *closed;
    void *owner;                     /* the server's listener, for `admit` and `closed` */
};

#endif
