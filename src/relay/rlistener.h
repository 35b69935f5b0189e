/* rlistener.h - a listener's relay state on one worker, for relay's own
 * files (the server reaches it only through relay/handler.h).
 */
#ifndef FERRY_RLISTENER_H
#define FERRY_RLISTENER_H

#include "net/addr.h"
#include "relay/rlistener-t.h"

/* The listener's resolver on this worker, created on first use; NULL (and
 * logged) if c-ares could not start. */
struct resolver *rlistener_resolver(struct relay_listener *rl);
/* A session of rl has closed and left the worker's list: the server gives
 * back its admission counts. */
/* Servers from DNS: takes the discoverer's latest table into this worker's
 * balancer when it changed (one atomic load when not). Call before a pick. */
void rlistener_sync_servers(struct relay_listener *rl);
/* Where server idx of the balancer is (the config's, or a discovered slot's). */
const struct host_port *rlistener_server(const struct relay_listener *rl, int idx);

void rlistener_session_closed(struct relay_listener *rl, const struct net_addr *client, int counted_ip);

#endif
