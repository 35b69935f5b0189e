/* sess_toxics.c - see sess_toxics.h. */
#include "relay/sess_toxics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "relay/pipe.h"
#include "relay/rlistener-t.h"
#include "obs/log.h"
#include "relay/sess_filters.h"
#include "relay/session.h"
#include "stage/lua_filter.h"
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

/* This worker's Lua state for a lua toxic's script, made on first use
 * (the API has loaded the script once already, so it is known to be
 * good); NULL, logged, if it cannot be had. */
static struct lua_engine *toxic_engine(struct session *s, const char *file)
{
    struct relay_listener *rl = s->wl;
    char err[512];
    for (size_t i = 0; i < RLISTENER_LUA_TOXICS; i++) {
        if (rl->lua_toxics[i].e && strcmp(rl->lua_toxics[i].file, file) == 0) return rl->lua_toxics[i].e;
        if (rl->lua_toxics[i].e) continue;
        if (!(rl->lua_toxics[i].e = lua_engine_new(file, 0, err, sizeof(err)))) {
            log_warn("listener=%s lua toxic: %s", rl->cfg->name, err);
            return NULL;
        }
        snprintf(rl->lua_toxics[i].file, sizeof(rl->lua_toxics[i].file), "%s", file);
        return rl->lua_toxics[i].e;
    }
    log_warn("listener=%s lua toxic %s not applied: at most %d scripts per listener", rl->cfg->name, file,
             RLISTENER_LUA_TOXICS);
    return NULL;
}

/* A lua toxic, if its toxicity roll comes up: the script's stages on the
 * toxic's streams, behind the queue's (a Lua filter of role toxics). */
static int add_lua_toxic(struct session *s, const struct toxic_spec *t, uint64_t roll)
{
    if ((double)(roll >> 11) / 9007199254740992.0 >= t->toxicity) return 0;
    struct lua_engine *e = toxic_engine(s, t->file);
    if (!e) return 0;
    struct stage_session info;
    char err[512];
    sess_describe(s, &info);
    struct lua_sess *ls = lua_sess_new(e, &info, err, sizeof(err));
    if (!ls) return -2;
    void *up = NULL, *down = NULL;
    const struct stage_ops *ops;
    lua_sess_stages(ls, &ops, t->streams & TOXIC_UPSTREAM ? &up : NULL, t->streams & TOXIC_DOWNSTREAM ? &down : NULL);
    lua_sess_release(ls);
    /* Each call owns its state whatever it returns. */
    int r = up ? pipe_add_stage(&s->up, &lua_toxic_stage_ops, up, 1) : 0;
    if (down && pipe_add_stage(&s->down, &lua_toxic_stage_ops, down, 0) < 0) r = -1;
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
    int r = add_stages(s);
    if (r == 0) r = configure(s, set, gen);
    uint64_t roll = s->id * 0xBF58476D1CE4E5B9ULL ^ clock_now_us();
    for (size_t i = 0; r == 0 && i < set->n; i++) {
        roll = roll * 6364136223846793005ULL + 1442695040888963407ULL;
        if (set->t[i].type == TOXIC_LUA) r = add_lua_toxic(s, &set->t[i], roll);
    }
    toxic_set_unref(set);
    return r;
}

void sess_toxics_listener_stop(struct relay_listener *rl)
{
    for (size_t i = 0; i < RLISTENER_LUA_TOXICS; i++) {
        lua_engine_free(rl->lua_toxics[i].e);    /* waits for sessions still holding it */
        rl->lua_toxics[i].e = NULL;
    }
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
