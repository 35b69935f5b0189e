/* sess_toxics.c - see sess_toxics.h. */
#include "relay/sess_toxics.h"

#include <stdlib.h>

#include "core/loop.h"
#include "relay/pipe.h"
#include "relay/rlistener-t.h"
#include "relay/session.h"
#include "stage/toxq_stage.h"

static int configure(struct session *s, struct toxic_set *set, unsigned gen)
{
    uint64_t now = clock_now_us();
    int r = toxq_configure(s->tox->up, set, TOXIC_UPSTREAM, now);
    if (r == 0) r = toxq_configure(s->tox->down, set, TOXIC_DOWNSTREAM, now);
    if (r == 0) s->tox->gen = gen;
    return r;
}

/* Two empty queues, each a stage of its direction (the chains own them
 * from here, whatever happens). Early data, already waiting up, goes
 * through them. Each session rolls its own toxicity: the
 * seed comes from its id and the time. */
static int add_stages(struct session *s)
{
    uint64_t seed = s->id * 0x9E3779B97F4A7C15ULL ^ clock_now_us();
    struct sess_toxics *t = calloc(1, sizeof(*t));
    if (!t) return -1;
    s->tox = t;
    t->up = toxq_stage_new(seed);
    if (!t->up || pipe_add_stage(&s->up, &toxq_stage_ops, t->up, 1) < 0) return -1;
    t->down = toxq_stage_new(seed ^ 0xD1B54A32D192ED03ULL);
    /* Down already holds the front-end's reply (SOCKS): not the toxics'. */
    if (!t->down || pipe_add_stage(&s->down, &toxq_stage_ops, t->down, 0) < 0) return -1;
    return 0;
}

int sess_toxics_attach(struct session *s)
{
    struct toxic_slot *slot = &s->wl->sh->toxics;
    /* Only a hint, read without the lock: a set published after this is
     * delivered by sess_toxics_refresh() on this same thread. */
    if (!__atomic_load_n(&slot->cur, __ATOMIC_ACQUIRE)) return 0;
    unsigned gen;
    struct toxic_set *set = toxic_slot_acquire(slot, &gen);
    if (!set) return 0;
    int r = add_stages(s);
    if (r == 0) r = configure(s, set, gen);
    toxic_set_unref(set);
    return r;
}

void sess_toxics_free(struct session *s)
{
    free(s->tox);
    s->tox = NULL;
}

void sess_toxics_refresh(struct session *s)
{
    if (s->state != SESS_RELAYING) return;   /* picked up at relay start */
    if (!s->tox) {
        if (sess_toxics_attach(s) < 0) {
            sess_close(s, END_LOCAL_ERROR);
            return;
        }
    } else {
        unsigned gen;
        struct toxic_set *set = toxic_slot_acquire(&s->wl->sh->toxics, &gen);
        int r = gen == s->tox->gen ? 0 : configure(s, set, gen);
        toxic_set_unref(set);
        if (r < 0) {
            sess_close(s, END_LOCAL_ERROR);
            return;
        }
    }
    sess_kick(s);
}
