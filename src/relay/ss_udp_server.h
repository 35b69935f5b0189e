/* ss_udp_server.h - ss-server -u: Shadowsocks UDP on the listener's port
 * number, with ferry as the NAT for the replies.
 *
 * The UDP sockets are bound with the listener's TCP sockets, before
 * privileges drop (ss_udp_bind, from the handler's shared_init; a reload
 * shares them); worker 0
 * reads them all, so that a client's datagrams always meet the same NAT
 * entry. Each client address (IP and port) is one entry: admitted like a
 * connection (ACLs, limits, time windows), with its own outside sockets
 * (relay/udp_out.h: destination policy, names, restricted replies), ended
 * after --udp-timeout without a datagram and logged then as one session
 * line. Packets that do not authenticate, replayed salts and clients past
 * the bound are dropped and counted, never answered: like the TCP side,
 * ss-server says nothing to a prober.
 */
#ifndef FERRY_SS_UDP_SERVER_H
#define FERRY_SS_UDP_SERVER_H

#include <stddef.h>

#include "config/config.h"

struct relay_listener;
struct ss_udp_server;

/* A UDP socket at each of lc's listen addresses (ports as bound for TCP)
 * into fds: a dup() of the one already bound there (a reload's new
 * listener: the same socket, bound before privileges dropped), else a new
 * one. Returns how many, or -1 with err (none left open). Any thread. */
int ss_udp_bind(const struct listener_cfg *lc, int *fds, char *err, size_t errlen);
/* Gives back what ss_udp_bind made; the socket closes with its last user. */
void ss_udp_unbind(const int *fds, size_t n);

/* Starts reading fds[0..n) on rl's worker (the sockets stay the caller's).
 * NULL with err. */
struct ss_udp_server *ss_udp_server_start(struct relay_listener *rl, const int *fds, size_t n, char *err,
                                          size_t errlen);

/* Stops reading and ends every client (logging each, end=drain): the
 * listener retires (a reload: its successor reads the same socket) or the
 * process drains. NULL is a no-op. */
void ss_udp_server_drain(struct ss_udp_server *u);
/* The same, and frees it. NULL is a no-op. */
void ss_udp_server_stop(struct ss_udp_server *u);

#endif
