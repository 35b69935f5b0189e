/* sess_proxy.h - --send-proxy: a PROXY protocol header (proto/proxy_proto.h)
 * at the start of a session's upstream connection.
 *
 * The header names the client (as accepted, or as its own PROXY header
 * named it with --accept-proxy) and the address the client connected to
 * (this listener's, the socket's local address). It goes ahead of early
 * data and of whatever the stages make (pipe_push_lead), through no stage:
 * filters, toxics and capture's plaintext never see it; capture's wire
 * view of the upstream leg does.
 */
#ifndef FERRY_SESS_PROXY_H
#define FERRY_SESS_PROXY_H

#include "relay/session-t.h"

/* Queues the header if the listener sends one; 0, or -1 (out of memory). */
int sess_proxy_attach(struct session *s);

#endif
