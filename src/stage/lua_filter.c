/* lua_filter.c - the Lua filter's stages: one per direction, both sharing
 * the session's lua_sess. See lua_filter.h and stage/stage.h.
 *
 * A direction's output is one queue (pend): s:send() appends to it, and so
 * does what on_data returns, in the order they happen. While the queue is
 * not empty, or output is delayed, or the session is closing, the stage
 * takes no input: that is the pump's backpressure, and it bounds the
 * queue by what one hook call may make.
 */
#include "stage/lua_int.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- byte queues ---- */

int lua_buf_add(struct lua_buf *b, const void *p, size_t n, size_t max)
{
    size_t have = lua_buf_len(b);
    if (n > max || have > max - n) return -1;
    if (n == 0) return 0;
    if (b->len + n > b->cap && b->off) {
        memmove(b->data, b->data + b->off, have);
        b->off = 0;
        b->len = have;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void lua_buf_clear(struct lua_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Moves what fits of d's queue to io->out; an emptied queue is freed. */
static void flush(struct lua_dir *d, struct stage_io *io)
{
    struct lua_buf *b = &d->pend;
    size_t n = lua_buf_len(b), room = io->outcap - io->made;
    if (n > room) n = room;
    if (n == 0) return;
    memcpy(io->out + io->made, b->data + b->off, n);
    io->made += n;
    b->off += n;
    if (b->off == b->len) lua_buf_clear(b);
}

/* ---- on_data ---- */

struct data_call {
    struct lua_dir *d;
    const uint8_t *in;         /* the new bytes, after what is held */
    size_t n;
    int eof;
    uint8_t *out;              /* room for output straight to the pump */
    size_t room, made;
    int held;                  /* on_data returned nil */
};

/* Copies on_data's result: what fits straight out, the rest queued. */
static int take_result(lua_State *L, struct data_call *c)
{
    struct lua_dir *d = c->d;
    size_t len, direct = 0;
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) {
        c->held = 1;
        return 0;
    }
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        return luaL_error(L, "%s: on_data returned a %s (expected a string or nil)", d->ls->e->path,
                          lua_typename(L, t));
    const char *p = lua_tolstring(L, -1, &len);
    if (len > LUA_FILTER_OUT_MAX)
        return luaL_error(L, "%s: on_data returned %I bytes (at most %d a call)", d->ls->e->path,
                          (lua_Integer)len, LUA_FILTER_OUT_MAX);
    if (!lua_buf_len(&d->pend) && !d->delay_req_ms) {
        direct = len < c->room ? len : c->room;
        memcpy(c->out, p, direct);
        c->made = direct;
    }
    if (lua_buf_add(&d->pend, p + direct, len - direct, LUA_FILTER_OUT_MAX + LUA_FILTER_QUEUE_MAX) < 0)
        return luaL_error(L, "%s: out of memory for on_data's output", d->ls->e->path);
    return 0;
}

/* on_data(s, dir, held .. new, eof) */
static int call_on_data(lua_State *L)
{
    static const char *const names[] = { "up", "down" };
    struct data_call *c = lua_touserdata(L, 1);
    struct lua_dir *d = c->d;
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->ls->e->ref_data);
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->ls->sref);
    lua_pushstring(L, names[d->dir]);
    if (lua_buf_len(&d->hold)) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addlstring(&b, (const char *)d->hold.data + d->hold.off, lua_buf_len(&d->hold));
        luaL_addlstring(&b, (const char *)c->in, c->n);
        luaL_pushresult(&b);
    } else {
        lua_pushlstring(L, (const char *)c->in, c->n);
    }
    lua_pushboolean(L, c->eof);
    lua_call(L, 4, 1);
    return take_result(L, c);
}

static void pass_through(struct lua_dir *d, struct stage_io *io)
{
    size_t n = io->outcap - io->made;
    if (n > io->inlen) n = io->inlen;
    if (n) memcpy(io->out + io->made, io->in, n);
    io->made += n;
    io->used = n;
    if (io->in_eof && n == io->inlen) d->ended = 1;
}

/* After on_data returned nil: keep the new bytes. Full and still nil is
 * the script's mistake: nothing it could receive next would fit. */
static int hold_input(struct lua_dir *d, const uint8_t *in, size_t n)
{
    char why[384];
    if (lua_buf_add(&d->hold, in, n, LUA_FILTER_HOLD_MAX) == 0 && lua_buf_len(&d->hold) < LUA_FILTER_HOLD_MAX)
        return 0;
    snprintf(why, sizeof(why), "%s: on_data returned nil with %u bytes held (the most a direction may hold)",
             d->ls->e->path, LUA_FILTER_HOLD_MAX);
    lua_sess_fail(d->ls, "on_data", d->dir, why);
    return -1;
}

/* Takes what input fits under the hold cap through on_data. 0, or -1 when
 * the hook failed (the session is marked failed and logged). */
static int take_input(struct lua_dir *d, struct stage_io *io)
{
    struct lua_engine *e = d->ls->e;
    char err[512];
    if (e->ref_data == LUA_NOREF) {
        pass_through(d, io);
        return 0;
    }
    size_t room = LUA_FILTER_HOLD_MAX - lua_buf_len(&d->hold);
    size_t n = io->inlen < room ? io->inlen : room;
    int eof = io->in_eof && n == io->inlen;
    if (n == 0 && !eof) return 0;
    struct data_call c = { d, io->in, n, eof, io->out + io->made, io->outcap - io->made, 0, 0 };
    e->cur = d->ls;
    e->cur_dir = d->dir;
    int rc = lua_engine_pcall(e, call_on_data, &c, err, sizeof(err));
    e->cur = NULL;
    e->cur_dir = -1;
    io->used = n;
    if (rc < 0) {
        lua_sess_fail(d->ls, "on_data", d->dir, err);
        return -1;
    }
    io->made += c.made;
    if (eof) d->ended = 1;
    if (eof || !c.held) {
        lua_buf_clear(&d->hold);
        return 0;
    }
    return hold_input(d, io->in, n);
}

/* ---- the stage ---- */

/* 1 while s:delay() holds this direction (a request becomes a time here,
 * where the clock is known). */
static int held_back(struct lua_dir *d, uint64_t now)
{
    if (d->delay_req_ms) {
        d->delay_until = now + (uint64_t)d->delay_req_ms * 1000;
        d->delay_req_ms = 0;
    }
    if (!d->delay_until) return 0;
    if (now < d->delay_until) return 1;
    d->delay_until = 0;
    return 0;
}

static int queues_empty(const struct lua_sess *ls)
{
    return !lua_buf_len(&ls->d[0].pend) && !lua_buf_len(&ls->d[1].pend);
}

static enum stage_status lf_process(void *state, struct stage_io *io)
{
    struct lua_dir *d = state;
    struct lua_sess *ls = d->ls;
    io->used = io->made = 0;
    io->out_eof = 0;
    if (ls->failed) return STAGE_ERROR;
    if (ls->reset) return STAGE_RESET;
    if (held_back(d, io->now_us)) return STAGE_OK;
    flush(d, io);
    /* Input only into room: what a hook makes then goes straight out. */
    if (!lua_buf_len(&d->pend) && !ls->closing && !d->ended && io->made < io->outcap) {
        if (take_input(d, io) < 0) {
            io->made = 0;
            return STAGE_ERROR;
        }
        if (!held_back(d, io->now_us)) flush(d, io);
    }
    if (ls->reset) {
        io->made = 0;
        return STAGE_RESET;
    }
    if (ls->closing && queues_empty(ls)) return STAGE_CLOSE;
    if (d->ended && !lua_buf_len(&d->pend)) io->out_eof = d->eof_out = 1;
    return STAGE_OK;
}

/* "Now" (0) while something is due without input: queued output, an
 * outcome to report, a delay to start; the delay's end while held. */
static uint64_t lf_next_wakeup(const void *state)
{
    const struct lua_dir *d = state;
    const struct lua_sess *ls = d->ls;
    if (ls->failed || ls->reset || d->delay_req_ms) return 0;
    if (d->delay_until) return d->delay_until;
    if (lua_buf_len(&d->pend)) return 0;
    if (ls->closing && queues_empty(ls)) return 0;
    return UINT64_MAX;
}

static void lf_free(void *state)
{
    struct lua_dir *d = state;
    lua_sess_release(d->ls);
}

const struct stage_ops lua_filter_stage_ops = {
    .name = "lua",
    .role = STAGE_FILTER,
    .process = lf_process,
    .next_wakeup = lf_next_wakeup,
    .max_input = NULL,
    .free = lf_free,
};

/* The same script as a toxic: after the filters, with the toxics. */
const struct stage_ops lua_toxic_stage_ops = {
    .name = "lua-toxic",
    .role = STAGE_TOXICS,
    .process = lf_process,
    .next_wakeup = lf_next_wakeup,
    .max_input = NULL,
    .free = lf_free,
};
