/* worker.h - worker threads: one loop each, listeners, accept, drain.
 *
 * workers_start() binds every listen address once per worker (SO_REUSEPORT:
 * the kernel spreads connections across the workers' sockets), then runs
 * each worker's loop on its own thread. A connection lives and dies on the
 * thread that accepted it.
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <stddef.h>

#include "config/config.h"
#include "server/worker-t.h"

/* Binds every listen address once per worker (SO_REUSEPORT; a port 0 is
 * replaced in cfg by the port picked), then creates the workers. Returns
 * NULL with a one-line reason in err (e.g. address in use). Threads are not
 * started yet. */
struct server_worker *workers_create(struct ferry_cfg *cfg, unsigned n, char *err, size_t errlen);
int workers_start(struct server_worker *ws, unsigned n);
/* mode 1: drain (stop accepting, wait up to drain-timeout); 2: stop now. */
void workers_request_stop(struct server_worker *ws, unsigned n, int mode);
/* Number of workers whose thread has not finished yet. */
unsigned workers_running(void);
void workers_join_and_free(struct server_worker *ws, unsigned n);

/* A listener's state shared by all workers (admission counters; relay's
 * part: health, the toxic slot with the listener's --toxic set); 0, or -1
 * with err. */
int worker_shared_init(struct listener_shared *sh, const struct listener_cfg *lc, char *err, size_t errlen);
void worker_shared_free(struct listener_shared *sh);

/* Listener building blocks, for workers_create() and for listeners added
 * or removed at run time (server/runtime.c), on the worker's own thread.
 * setup: the mode's relay state (sh->handler's attach), no sockets; 0 or
 * -1 with err. retarget: a stopped listener's new config (upstreams); 0,
 * or -1 with err and the old config kept. add_socket: takes a bound,
 * listening, non-blocking fd (0, or -1 with errno: the fd stays the
 * caller's). close_sockets: stops accepting. release: what setup and
 * first use created (the handler's detach); sessions must be closed first. */
int worker_listener_setup(struct server_worker *w, struct wlistener *wl, const struct listener_cfg *lc,
                          struct listener_shared *sh, char *err, size_t errlen);
int worker_listener_retarget(struct wlistener *wl, const struct listener_cfg *lc, char *err, size_t errlen);
int worker_listener_add_socket(struct wlistener *wl, int fd);
void worker_listener_close_sockets(struct wlistener *wl);
void worker_listener_release(struct wlistener *wl);

/* For a reload (server/reload.c), on the worker's thread. take_socket:
 * the listening socket of wl bound to `a`, which wl stops watching (its
 * accept queue stays whole): the fd, or -1 when wl has none. retire: wl,
 * whose sockets are already taken or closed, lets its sessions finish,
 * closing what is left after drain_ms (end=drain), then is released
 * (unlinked and freed if it was added at run time) and done(arg) runs. */
int worker_listener_take_socket(struct wlistener *wl, const struct net_addr *a);
void worker_listener_retire(struct wlistener *wl, unsigned drain_ms, wlistener_retired_fn *done, void *arg);

/* Admits an accepted fd whose client is `client` (server/admit.c) and hands
 * it to the listener's handler, or refuses it; the fd is taken either way.
 * From accept, or once its PROXY header has named the client (proxyin.c). */
void worker_admit(struct wlistener *wl, int fd, const struct net_addr *client);

/* Closes every session of the worker (end=drain), listener by listener;
 * on the worker's thread, or on a thread driving its loop (the session fuzzer). */
void worker_close_sessions(struct server_worker *w);

#endif
