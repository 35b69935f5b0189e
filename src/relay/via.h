/* via.h - reaching destinations through parent proxies (--via).
 *
 * connect.c connects to the first parent instead of the destination
 * (via_take_target) and, once that TCP connection is up, hands the session
 * here (via_start): it sits in SESS_VIA while each parent in turn is asked,
 * in its own protocol (proto/via_client.c), for the next parent or, the
 * last, for the destination; then relaying starts as if the destination
 * itself had answered. An ss:// parent (only ever the last) needs no round
 * trip: its encoder and decoder go on the session's chains (ss_codec.c),
 * with the destination in the encoder's address header.
 */
#ifndef FERRY_VIA_H
#define FERRY_VIA_H

#include <stdint.h>

#include "relay/session-t.h"

/* Before connecting: the destination policy judges what the client asked
 * for (a name by the name rules only: it is not resolved here), which
 * then moves to s->dest; s->target becomes the first parent. 0, or -1
 * when the session has failed or closed. */
int via_take_target(struct session *s);
/* The first parent's TCP connection is up. */
void via_start(struct session *s);
/* SESS_VIA: the parent's socket is ready; the handshakes' deadline. */
void via_ready(struct session *s, uint32_t events);
void via_timeout(struct session *s);
/* Frees the handshake state (sess_close, through connect_cleanup). */
void via_free(struct session *s);

#endif
