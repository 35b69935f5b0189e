/* sess_toxics.h - a session's toxics: a toxics stage on each direction, and
 * picking up a listener's new set.
 *
 * Sessions of a listener without toxics have none (s->tox == NULL) and no
 * toxics stage. Toxics apply from the moment bytes are relayed: the SOCKS
 * or Shadowsocks handshake before that is not touched.
 */
#ifndef FERRY_SESS_TOXICS_H
#define FERRY_SESS_TOXICS_H

#include "relay/session-t.h"
#include "stage/toxq.h"

struct sess_toxics {
    struct toxq *up, *down;       /* the stages' states: the chains own them */
    unsigned gen;                 /* slot generation these toxics come from */
};

/* At relay start: the listener's current toxics, if any, as a stage on
 * each direction; what the client already sent goes through them. A lua
 * toxic is a Lua filter stage of role toxics on its streams, for sessions
 * that start relaying while it exists (the queue's toxics also change
 * sessions already relaying). 0, -1 when out of memory, -2 when a lua
 * toxic's on_connect failed (logged). */
int sess_toxics_attach(struct session *s);
/* Forgets the stages (they go with their chains). */
void sess_toxics_free(struct session *s);

/* The listener goes: its lua toxics' Lua states with it. */
struct relay_listener;
void sess_toxics_listener_stop(struct relay_listener *rl);

#endif
