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
/* Releases everything connecting holds (query, address list, server slot). */
void connect_cleanup(struct session *s);

#endif
