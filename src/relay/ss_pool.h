/* ss_pool.h - ss-local --pool: connections to the ss-server opened ahead.
 *
 * A new client takes an already connected socket and skips the TCP
 * handshake to the server. Pooled sockets have sent nothing yet, so an
 * ss-server would close them after its handshake timeout: they are
 * replaced once older than --pool-max-age (default 8 s, below ferry's and
 * ss-libev's defaults), and dropped at once if the server closes one.
 * Per worker; the pool refills itself after every take.
 */
#ifndef FERRY_SS_POOL_H
#define FERRY_SS_POOL_H

#include "net/addr.h"
#include "relay/rlistener-t.h"

struct ss_pool;

/* NULL if the listener has no pool (or out of memory: clients then connect
 * normally). Starts filling at once. */
struct ss_pool *ss_pool_new(struct relay_listener *wl);
void ss_pool_free(struct ss_pool *p);
/* A connected socket to the ss-server, or -1 if none is ready. */
int ss_pool_take(struct ss_pool *p, struct net_addr *peer);

#endif
