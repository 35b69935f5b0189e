/* connect.h - getting a session to its upstream.
 *
 * Target (front-end's choice, or the balancer's pick for relay listeners) ->
 * resolve (c-ares; literals skip it) -> destination policy -> try each
 * address in order -> on failure, the next upstream server (relay, up to
 * `retries`) -> sess_relay_start() or sess_connect_failed().
 */
#ifndef FERRY_CONNECT_H
#define FERRY_CONNECT_H

#include <stdint.h>

#include "relay/session-t.h"

void connect_start(struct session *s);
/* Timer callback (owner: the relay_listener): serves the wait queue. */
void connect_queue_run(struct loop *l, struct loop_timer *t);
/* Upstream socket readiness while CONNECTING. */
void connect_ready(struct session *s, uint32_t events);
/* The session timer expired while RESOLVING or CONNECTING. */
void connect_timeout(struct session *s);
/* The listener's wait list (FIFO, at most queue_size; the session's qprev
 * and qnext): push, 0 or -1 when full; remove, a no-op if not in it. The
 * session's state and timer are the caller's. */
int connect_queue_push(struct session *s);
void connect_queue_remove(struct session *s);
/* Releases everything connecting holds (query, address list, server slot). */
void connect_cleanup(struct session *s);

#endif
