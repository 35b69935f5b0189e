/* udp_assoc.h - a SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) of one session.
 *
 * The SOCKS front opens it when a client asks for UDP ASSOCIATE (after
 * authentication, like CONNECT) and frees it from its free hook; the session
 * meanwhile holds the TCP connection as the association's control channel
 * (SESS_HOLDING, relay/session.c) and ends it at the client's EOF or error.
 * The association ends the session itself at its idle deadline
 * (--udp-timeout) or at --max-session-time.
 *
 * Datagrams are relayed one at a time through a stack buffer: nothing is
 * queued. The only memory that waits is one datagram for a name being
 * resolved; a second one while that lookup runs is dropped. Every drop is
 * counted, by kind, in the session's log line.
 */
#ifndef FERRY_UDP_ASSOC_H
#define FERRY_UDP_ASSOC_H

#include <stddef.h>
#include <stdint.h>

#include "proto/socks_addr.h"
#include "relay/session-t.h"

struct udp_assoc;

/* Opens the association of session s, whose client declared `declared`
 * (DST of the request: where its datagrams will come from, zeros for "not
 * known"). Returns it with *bound set to the relay address for the reply
 * (the IP the client's TCP connection reached, the port of the new UDP
 * socket); or NULL with *rep the SOCKS5 reply code to answer, and *why the
 * session's end reason. */
struct udp_assoc *udp_assoc_open(struct session *s, const struct socks_addr *declared, struct socks_addr *bound,
                                 uint8_t *rep, enum sess_end *why);

/* Closes its sockets, cancels its timer and lookup; the memory goes after
 * the current epoll batch. NULL is a no-op. */
void udp_assoc_free(struct udp_assoc *a);

/* "udp_up_dgrams=N ... udp_drop_kernel=N udp_dest=HOST:PORT" for the session's log line. */
void udp_assoc_log_fields(const struct udp_assoc *a, char *out, size_t outlen);

#endif
