/* mux_local.h - mux-local (N:1): every client a yamux stream over a few
 * long-lived connections to a mux-server.
 *
 * Each worker keeps --mux-conns connections to the server (-s), dialled at
 * start and re-dialled with backoff when lost. A session's upstream is a
 * stream opened on the least loaded of them; with --socks the client's
 * target goes at the stream's start. The session is CONNECTING until the
 * server acknowledges the stream (a mux-server acknowledges once its own
 * upstream connected), and waits there while no connection is up.
 */
#ifndef FERRY_MUX_LOCAL_H
#define FERRY_MUX_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "relay/session-t.h"

struct relay_listener;
struct mux_pool;

struct mux_pool *mux_pool_new(struct relay_listener *rl);
/* Dials the connections. 0, or -1 with err. */
int mux_pool_start(struct mux_pool *p, char *err, size_t errlen);
/* GoAway on every connection; no more dialling. */
void mux_pool_drain(struct mux_pool *p);
/* Closes every connection; frees p. NULL is fine. */
void mux_pool_free(struct mux_pool *p);

/* From connect.c, for a mux-local session: open its stream (or wait for a
 * connection); the stream's readiness while CONNECTING; the timer. */
void mux_local_connect(struct session *s);
void mux_local_ready(struct session *s, uint32_t events);
void mux_local_timeout(struct session *s);

#endif
