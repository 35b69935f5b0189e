/* sess_toxics.h - a session's toxics: its two toxic queues, the timer that
 * releases their pieces when due, and picking up a listener's new set.
 *
 * Sessions of a listener without toxics have none (s->tox == NULL) and take
 * the plain pump. Toxics apply from the moment bytes are relayed: the SOCKS
 * or Shadowsocks handshake before that is not touched.
 */
#ifndef FERRY_SESS_TOXICS_H
#define FERRY_SESS_TOXICS_H

#include "core/loop.h"
#include "relay/session-t.h"
#include "stage/toxq.h"

struct sess_toxics {
    struct loop_timer timer;      /* the earliest due piece, EOF or action */
    struct toxq up, down;
    unsigned gen;                 /* slot generation these toxics come from */
};

/* At relay start: the listener's current toxics, if any. 0, or -1 when out
 * of memory. */
int sess_toxics_attach(struct session *s);
void sess_toxics_free(struct session *s);
/* At relay start, before any encoder is installed: early data (what the
 * client sent behind its handshake or during the connect, plaintext in the
 * up half's ready buffer) goes into the up toxics, not past them. 0, or -1
 * when out of memory. */
int sess_toxics_take_early(struct session *s);
/* After a pump: wake up when the next piece, EOF or action is due. */
void sess_toxics_arm(struct session *s);
/* The queue of a direction, or NULL. */
static inline struct toxq *sess_toxq(const struct session *s, const struct half *h)
{
    return s->tox ? (h == &s->up ? &s->tox->up : &s->tox->down) : NULL;
}
uint64_t toxics_now_us(void);

#endif
