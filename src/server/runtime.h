/* runtime.h - listeners added, changed and removed while ferry runs.
 *
 * The HTTP API (api/control.c) drives these from its own thread. Each call
 * binds what needs binding on the calling thread (so "address in use"
 * comes back as an error before any worker is touched), then runs one
 * command on every worker (core/wcmd.h) and returns when all are done.
 *
 * A listener is known on every worker by its shared state `sh`, which is
 * unique per listener: configured listeners have theirs in the workers'
 * shared array; listeners added here get one from the caller, who keeps it
 * (and the config) alive until rt_detach() returns, or until the workers
 * are freed if it never is called.
 */
#ifndef FERRY_RUNTIME_H
#define FERRY_RUNTIME_H

#include <stddef.h>

#include "server/worker-t.h"
#include "net/addr.h"

struct rt {
    struct server_worker *ws;
    unsigned n;
};

/* A new listener on every worker, not accepting yet. 0, or -1 with err
 * (and nothing attached). */
int rt_attach(const struct rt *rt, const struct listener_cfg *lc, struct listener_shared *sh,
              char *err, size_t errlen);
/* Accepts on fds[worker id] from now on. Takes the fds: a worker that is
 * draining, or has stopped, does not listen, and its fd is closed. */
void rt_start(const struct rt *rt, struct listener_shared *sh, int *fds);
/* Stops accepting and closes the listener's sessions (end=api). */
void rt_stop(const struct rt *rt, struct listener_shared *sh);
/* Points a stopped listener at a new config (upstreams, listen addresses);
 * the old config may be freed when this returns. 0, or -1 with err: the
 * listener keeps its old config. */
int rt_retarget(const struct rt *rt, struct listener_shared *sh, const struct listener_cfg *lc,
                char *err, size_t errlen);
/* Stops a listener made by rt_attach() and frees it on every worker. */
void rt_detach(const struct rt *rt, struct listener_shared *sh);
/* Tells the listener's sessions its toxic set changed (through the listener handler's refresh_toxics). */
void rt_refresh_toxics(const struct rt *rt, struct listener_shared *sh);

#endif
