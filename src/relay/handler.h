/* handler.h - the accept hook: how the server reaches relay.
 *
 * The server (server/worker.c) owns threads, listening sockets and
 * admission, and knows nothing of sessions. For every listener it asks
 * relay_handler() for its mode's handler once, as nginx's listening
 * sockets carry `ls->handler`, and from then on reaches relay only through
 * that table: attach the listener's relay state on a worker, hand it every
 * admitted connection, stop, retarget or detach it.
 *
 * Types the server lends or embeds are here too: `struct worker` (the
 * thread's loop, pools and sessions, lent to relay) and `struct
 * relay_shared` (relay's part of a listener's cross-thread state). The
 * per-listener state itself, `struct relay_listener`, stays opaque.
 */
#ifndef FERRY_HANDLER_H
#define FERRY_HANDLER_H

#include <stddef.h>

#include "buf/buffer.h"
#include "buf/kpipe.h"
#include "config/config.h"
#include "stage/toxic.h"
#include "upstream/health.h"

struct loop;
struct disc_shared;
struct metrics_listener;
struct net_addr;
struct session;
struct relay_listener;

/* One worker thread as relay sees it. The server fills id, loop and the
 * pools and keeps them alive until every session is gone; relay links
 * its sessions here (for drain, and for the listener operations). */
struct worker {
    int id;
    struct loop *loop;
    struct buf_pool bufs;
    struct kpipe_pool pipes;
    struct session *sessions;        /* doubly linked */
    unsigned nsessions;
};

/* Relay's part of a listener's state shared by all workers: health is
 * checked once (worker 0) and read by everyone; the toxic slot is edited
 * by the API and read by sessions. */
struct relay_shared {
    struct health_shared health[CFG_MAX_UPSTREAMS];
    int checks_on;
    struct toxic_slot toxics;        /* --toxic and the API */
    /* The listener's counters (obs/metrics.h), NULL without --metrics;
     * the server counts its refusals there too. */
    struct metrics_listener *metrics;
    const struct listener_cfg *cfg;  /* as at shared_init: server names for the scrape */
    /* Servers found through DNS (cfg_discovered), else NULL: the slot table
     * worker 0's discoverer publishes (upstream/discover.h). */
    struct disc_shared *disc;
    /* ss-server -u: its UDP sockets, one per listen address, bound with
     * the TCP ones (before privileges drop); worker 0 reads them. */
    int udp_fds[CFG_MAX_LISTEN];
    size_t nudp;
};

/* Called when a session of the listener has closed, with what was given to
 * accept(), so that the server gives back the admission counts. */
typedef void rlistener_closed_fn(void *owner, const struct net_addr *client, int counted_ip);
/* Admission for a client that did not come through accept() (a stream a
 * mux peer opened): the listener's ACLs, time windows and limits, as for a
 * connection. NULL when admitted (counts taken: give them back through
 * `closed`), else the reason it was refused. */
typedef const char *rlistener_admit_fn(void *owner, const struct net_addr *client, int *counted_ip);

/* Why the server closes a listener's sessions: the log's end= reason. */
enum rlistener_close { RLISTENER_CLOSE_DRAIN, RLISTENER_CLOSE_API };

/* Every function runs on the worker's thread, except shared_init and
 * shared_free (any thread, before the first attach and after the last
 * detach of the listener). */
struct listener_handler {
    /* 0, or -1 with err. */
    int (*shared_init)(struct relay_shared *sh, const struct listener_cfg *lc, char *err, size_t errlen);
    void (*shared_free)(struct relay_shared *sh);
    /* The listener's relay state on worker w, not serving yet (no sockets
     * here: those are the server's). NULL with err. */
    struct relay_listener *(*attach)(struct worker *w, const struct listener_cfg *lc, struct relay_shared *sh,
                                     rlistener_admit_fn *admit, rlistener_closed_fn *closed, void *owner,
                                     char *err, size_t errlen);
    /* Once the listener accepts: background work such as health checks.
     * 0, or -1 with err. */
    int (*start)(struct relay_listener *rl, char *err, size_t errlen);
    /* Takes the admitted, non-blocking fd and the admission counts (given
     * back through `closed`). 0, or -1 if no session could be made: the fd
     * is closed and the counts are still the caller's. */
    int (*accept)(struct relay_listener *rl, int fd, const struct net_addr *peer, int counted_ip);
    /* A stopped listener's new config (upstreams); 0, or -1 with err and
     * the old config kept. */
    int (*retarget)(struct relay_listener *rl, const struct listener_cfg *lc, char *err, size_t errlen);
    /* Closes the listener's sessions. */
    void (*close_sessions)(struct relay_listener *rl, enum rlistener_close why);
    /* Optional: the process drains (SIGTERM); sessions in flight go on.
     * A multiplexer tells its peers to open no more streams. */
    void (*drain)(struct relay_listener *rl);
    /* The listener's toxic set changed: its sessions take the new one. */
    void (*refresh_toxics)(struct relay_listener *rl);
    /* Frees what attach and first use made; sessions must be closed. */
    void (*detach)(struct relay_listener *rl);
};

/* The handler of a listener mode (MODE_SOCKS, ...); NULL for none. */
const struct listener_handler *relay_handler(enum ferry_mode mode);

#endif
