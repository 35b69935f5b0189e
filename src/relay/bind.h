/* bind.h - SOCKS BIND (RFC 1928 section 4, SOCKS4's BIND): ferry listens
 * for one inbound connection on the client's behalf (the data connection
 * of an active-mode FTP session), then relays it like a CONNECT.
 *
 * connect.c hands a session whose front-end asked for BIND here instead of
 * connecting. The session is CONNECTING while it waits: its upstream
 * socket is the listening one, its timer the connect timeout.
 */
#ifndef FERRY_BIND_H
#define FERRY_BIND_H

#include <stdint.h>

#include "relay/session-t.h"

/* Listens on an ephemeral port of the address that faces the expected
 * peer (s->target) and has the front-end send the first reply. */
void bind_start(struct session *s);
/* The listening socket is readable: take the one connection. */
void bind_ready(struct session *s, uint32_t events);
/* Nobody came within the connect timeout. */
void bind_timeout(struct session *s);

#endif
