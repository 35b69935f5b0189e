/* admit.h - admission control at accept: client ACL, time-of-day windows,
 * per-IP connection rate, and session limits (process, listener, per IP).
 *
 * Limits are exact across worker threads: counters live in the listener's
 * shared state (atomics; per-IP tables under a mutex, O(1) per accept).
 * A refused client is closed at once; SOCKS clients whose first byte has
 * already arrived get their protocol's refusal first.
 */
#ifndef FERRY_ADMIT_H
#define FERRY_ADMIT_H

#include <stddef.h>

#include "server/worker-t.h"
#include "net/addr.h"

int admit_shared_init(struct listener_shared *sh, const struct listener_cfg *cfg, char *err, size_t errlen);
void admit_shared_free(struct listener_shared *sh);

/* NULL when admitted (counters taken; *counted_ip says whether a per-IP
 * count was taken), else the name of the limit that refused the client:
 * "denied" (ACL), "hours", "rate_per_ip", "global_maxconn", "maxconn",
 * "maxconn_per_ip". */
const char *admit_client(struct wlistener *wl, const struct net_addr *peer, int *counted_ip);
/* --accept-proxy-from: 1 if peer may send a PROXY header (no list: any). */
int admit_proxy_source(const struct listener_cfg *cfg, const struct net_addr *peer);
/* Gives back what admit_client() took. */
void admit_release(struct wlistener *wl, const struct net_addr *peer, int counted_ip);
/* Refuses an accepted fd: protocol refusal if possible, log line, close. */
void admit_refuse(struct wlistener *wl, int fd, const struct net_addr *peer, const char *limit);
/* Sessions open in the whole process, every listener and thread (a
 * snapshot: other threads accept and close meanwhile). */
unsigned admit_sessions_open(void);
/* Closes refused clients still held for their answer (worker shutdown). */
void admit_close_all(struct server_worker *w);

#endif
