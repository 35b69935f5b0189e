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
#include "core/worker-t.h"

/* Creates workers and binds their sockets. Returns NULL with a one-line
 * reason in err (e.g. address in use). Threads are not started yet. */
struct worker *workers_create(const struct ferry_cfg *cfg, unsigned n, char *err, size_t errlen);
int workers_start(struct worker *ws, unsigned n);
/* mode 1: drain (stop accepting, wait up to drain-timeout); 2: stop now. */
void workers_request_stop(struct worker *ws, unsigned n, int mode);
/* Number of workers whose thread has not finished yet. */
unsigned workers_running(void);
void workers_join_and_free(struct worker *ws, unsigned n);

/* For sessions. */
struct resolver *worker_resolver(struct wlistener *wl);
void worker_session_closed(struct wlistener *wl, const struct net_addr *client, int counted_ip);

#endif
