/* sess_toxics.c - see sess_toxics.h. */
#include "relay/sess_toxics.h"

#include <stdlib.h>
#include <time.h>

#include "relay/rlistener-t.h"
#include "relay/session.h"

uint64_t toxics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void timer_cb(struct loop *l, struct loop_timer *t)
{
    (void)l;
    sess_kick(t->owner);
}

static int configure(struct session *s, struct toxic_set *set, unsigned gen)
{
    uint64_t now = toxics_now_us();
    int r = toxq_configure(&s->tox->up, set, TOXIC_UPSTREAM, now);
    if (r == 0) r = toxq_configure(&s->tox->down, set, TOXIC_DOWNSTREAM, now);
    if (r == 0) s->tox->gen = gen;
    return r;
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
    struct sess_toxics *t = calloc(1, sizeof(*t));
    if (!t) {
        toxic_set_unref(set);
        return -1;
    }
    /* Each session rolls its own toxicity: seed from its id and the time. */
    uint64_t seed = s->id * 0x9E3779B97F4A7C15ULL ^ toxics_now_us();
    toxq_init(&t->up, seed);
    toxq_init(&t->down, seed ^ 0xD1B54A32D192ED03ULL);
    loop_timer_init(&t->timer, timer_cb, s);
    s->tox = t;
    int r = configure(s, set, gen);
    toxic_set_unref(set);
    if (r < 0) sess_toxics_free(s);
    return r;
}

int sess_toxics_take_early(struct session *s)
{
    struct half *h = &s->up;
    if (!s->tox || !h->buf || buf_empty(h->buf)) return 0;
    /* The pump flushes the ready buffer before it looks at the toxics, so
     * bytes left there would skip them. Their bytes were counted and
     * tapped when read; the queue takes a copy. */
    if (toxq_push(&s->tox->up, buf_rptr(h->buf), buf_len(h->buf), toxics_now_us()) < 0) return -1;
    buf_put(&s->wl->w->bufs, h->buf);
    h->buf = NULL;
    return 0;
}

void sess_toxics_free(struct session *s)
{
    if (!s->tox) return;
    loop_timer_cancel(s->wl->w->loop, &s->tox->timer);
    toxq_free(&s->tox->up);
    toxq_free(&s->tox->down);
    free(s->tox);
    s->tox = NULL;
}

void sess_toxics_arm(struct session *s)
{
    if (!s->tox) return;
    uint64_t a = toxq_next_wakeup(&s->tox->up), b = toxq_next_wakeup(&s->tox->down);
    uint64_t due = a < b ? a : b;
    struct loop *l = s->wl->w->loop;
    if (due == UINT64_MAX) {
        loop_timer_cancel(l, &s->tox->timer);
        return;
    }
    /* Microseconds to the loop's milliseconds, rounded up: never early. */
    uint64_t now_us = toxics_now_us(), now_ms = loop_update_now(l);
    uint64_t wait_us = due > now_us ? due - now_us : 0;
    loop_timer_arm(l, &s->tox->timer, now_ms + (wait_us + 999) / 1000);
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
