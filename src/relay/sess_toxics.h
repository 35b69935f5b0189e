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
 * each direction; what the client already sent goes through them. 0, or
 * -1 when out of memory. */
int sess_toxics_attach(struct session *s);
/* Forgets the stages (they go with their chains). */
void sess_toxics_free(struct session *s);

#endif
