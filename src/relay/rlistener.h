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
void rlistener_session_closed(struct relay_listener *rl, const struct net_addr *client, int counted_ip);

#endif
