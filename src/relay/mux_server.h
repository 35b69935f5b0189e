/* mux_server.h - mux-server (1:N): yamux connections accepted on a
 * listener, every stream a session to an upstream. */
#ifndef FERRY_MUX_SERVER_H
#define FERRY_MUX_SERVER_H

#include "net/addr.h"

struct relay_listener;

/* Takes an admitted connection (fd and its admission counts, given back
 * when it closes) and reads yamux from it. 0, or -1 (fd closed, the counts
 * still the caller's). */
int mux_server_accept(struct relay_listener *rl, int fd, const struct net_addr *peer, int counted_ip);
/* GoAway to every connection: no new streams; the connections close as
 * their last streams do. */
void mux_server_drain(struct relay_listener *rl);
/* Closes every connection now (their streams' sessions end mux_error). */
void mux_server_close_all(struct relay_listener *rl);

#endif
