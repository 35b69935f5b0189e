/* proxyin.h - the PROXY protocol header of a new connection (--accept-proxy),
 * read before admission.
 *
 * Behind HAProxy or a cloud L4 balancer every connection comes from the
 * balancer; the client is named by the header the balancer sends first. So a
 * listener with --accept-proxy holds each accepted fd here, on the worker's
 * loop, until its header has been read (bounded: PP_MAX bytes and
 * --accept-proxy-timeout), and only then admits it with the client address
 * from the header (ACL, time windows, per-IP rate and counts, the session
 * limits: server/admit.c) and hands it to the listener's handler, which never
 * sees the header. Exactly the header's bytes are consumed (MSG_PEEK, then a
 * read of what belongs to it), so a SOCKS greeting or early data sent right
 * behind it stays in the socket for the session.
 *
 * A bad header, a connection that ends before it, and a header that is late
 * are logged (end=proxy_header reason=...) with the balancer's address, and
 * closed. Held connections are at most PROXYIN_MAX_HELD in the process.
 */
#ifndef FERRY_PROXYIN_H
#define FERRY_PROXYIN_H

#include "net/addr.h"
#include "server/worker-t.h"

#define PROXYIN_MAX_HELD 16384

/* Takes the accepted fd (peer: the balancer); closes it on failure. */
void proxyin_start(struct wlistener *wl, int fd, const struct net_addr *peer);
/* Closes the listener's connections still waiting for their header
 * (its sockets are closing: stop, detach, drain). */
void proxyin_close_listener(struct wlistener *wl);
/* A reload handed from's listening sockets to `to`: the connections from
 * still waiting for their header will be admitted by `to` (a reload
 * refuses none of them). */
void proxyin_move_listener(struct wlistener *from, struct wlistener *to);
/* Closes every held connection of the worker (shutdown). */
void proxyin_close_all(struct server_worker *w);

#endif
