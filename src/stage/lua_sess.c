/* lua_sess.c - a session's filter and the script's `s`. See lua_filter.h.
 *
 * `s` is a full userdata holding only a pointer back to the lua_sess, and
 * its `state` table as user value. It is kept alive by a registry
 * reference while the session lives; at the end the pointer is cleared
 * and the reference dropped, so the collector can take both, and a script
 * that kept `s` in a global gets "session is over" instead of another
 * session's memory.
 */
#include "stage/lua_int.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/log.h"

#define SESS_MT "ferry.session"
#define LOG_TEXT_MAX 512

struct sbox {
    struct lua_sess *ls;
};

static const char *const dir_names[] = { "up", "down", NULL };

/* ---- logging ---- */

/* log_sanitize(), then spaces put back: the text stays readable, and
 * without '=' or control bytes it still cannot forge a field or a line. */
static void text_sanitize(char *dst, size_t dstlen, const char *src, size_t len)
{
    char raw[LOG_TEXT_MAX];
    size_t n = len < sizeof(raw) - 1 ? len : sizeof(raw) - 1;
    for (size_t i = 0; i < n; i++) raw[i] = src[i] ? src[i] : '?';
    raw[n] = '\0';
    log_sanitize(dst, dstlen, raw);
    for (size_t i = 0; i < n && dst[i]; i++)
        if (raw[i] == ' ') dst[i] = ' ';
}

void lua_sess_log(const struct lua_sess *ls, int level, const char *what, const char *text, size_t len)
{
    char clean[LOG_TEXT_MAX];
    if (!log_enabled(level)) return;
    text_sanitize(clean, sizeof(clean), text, len);
    log_msg(level, "sess=%llu listener=%s %s: %s", (unsigned long long)ls->id, ls->listener, what, clean);
}

void lua_sess_fail(struct lua_sess *ls, const char *hook, int dir, const char *why)
{
    char what[64];
    if (ls->failed) return;
    ls->failed = 1;
    snprintf(what, sizeof(what), "filter_error hook=%s%s%s", hook, dir >= 0 ? " dir=" : "",
             dir >= 0 ? dir_names[dir] : "");
    lua_sess_log(ls, LOG_WARN, what, why, strlen(why));
}

/* ---- `s` ---- */

static struct lua_sess *check_sess(lua_State *L)
{
    struct sbox *b = luaL_checkudata(L, 1, SESS_MT);
    if (!b->ls) luaL_error(L, "session is over");
    return b->ls;
}

/* s:send(dir, bytes): after what that direction has made so far. true, or
 * false when that direction has already ended (its end went out). */
static int s_send(lua_State *L)
{
    struct lua_sess *ls = check_sess(L);
    int dir = luaL_checkoption(L, 2, NULL, dir_names);
    size_t n;
    const char *p = luaL_checklstring(L, 3, &n);
    if (ls->reset || ls->failed || ls->d[dir].eof_out) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (lua_buf_add(&ls->d[dir].pend, p, n, LUA_FILTER_QUEUE_MAX) < 0)
        return luaL_error(L, "s:send: more than %d bytes waiting to go %s", LUA_FILTER_QUEUE_MAX, dir_names[dir]);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_close(lua_State *L)
{
    check_sess(L)->closing = 1;
    return 0;
}

static int s_reset(lua_State *L)
{
    check_sess(L)->reset = 1;
    return 0;
}

static int s_log(lua_State *L)
{
    struct lua_sess *ls = check_sess(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    lua_sess_log(ls, LOG_INFO, "lua", p, n);
    return 0;
}

/* s:delay(ms [, dir]): dir defaults to the running on_data's direction,
 * and to both outside on_data. */
static void delay_dir(struct lua_dir *d, unsigned ms)
{
    if (ms > d->delay_req_ms) d->delay_req_ms = ms;
}

static int s_delay(lua_State *L)
{
    struct lua_sess *ls = check_sess(L);
    lua_Integer ms = luaL_checkinteger(L, 2);
    luaL_argcheck(L, ms >= 0 && ms <= 3600000, 2, "expected 0 to 3600000 ms");
    int dir = lua_isnoneornil(L, 3) ? ls->e->cur_dir : luaL_checkoption(L, 3, NULL, dir_names);
    if (dir < 0) {
        delay_dir(&ls->d[0], (unsigned)ms);
        delay_dir(&ls->d[1], (unsigned)ms);
    } else {
        delay_dir(&ls->d[dir], (unsigned)ms);
    }
    return 0;
}

static int push_field(lua_State *L, const struct lua_sess *ls, const char *k)
{
    if (strcmp(k, "id") == 0) lua_pushinteger(L, (lua_Integer)ls->id);
    else if (strcmp(k, "listener") == 0) lua_pushstring(L, ls->listener);
    else if (strcmp(k, "client") == 0) lua_pushstring(L, ls->client);
    else if (strcmp(k, "dest") == 0) lua_pushstring(L, ls->dest_name);
    else if (strcmp(k, "dest_addr") == 0) lua_pushstring(L, ls->dest_addr);
    else if (strcmp(k, "user") == 0) lua_pushstring(L, ls->user);
    else if (strcmp(k, "state") == 0) lua_getiuservalue(L, 1, 1);
    else return 0;
    return 1;
}

static int s_index(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "send", s_send }, { "close", s_close }, { "reset", s_reset },
        { "log", s_log }, { "delay", s_delay }, { NULL, NULL },
    };
    struct lua_sess *ls = check_sess(L);
    const char *k = luaL_checkstring(L, 2);
    for (const luaL_Reg *m = methods; m->name; m++)
        if (strcmp(k, m->name) == 0) {
            lua_pushcfunction(L, m->func);
            return 1;
        }
    if (!push_field(L, ls, k)) lua_pushnil(L);
    return 1;
}

static int s_newindex(lua_State *L)
{
    return luaL_error(L, "s is read-only: keep your own values in s.state");
}

void lua_sess_register(lua_State *L)
{
    luaL_newmetatable(L, SESS_MT);
    lua_pushcfunction(L, s_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, s_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, SESS_MT);             /* getmetatable(s) gets this, not the table */
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* ---- lifecycle ---- */

/* Makes `s`, refs it, runs on_connect(s). */
static int sess_open(lua_State *L)
{
    struct lua_sess *ls = lua_touserdata(L, 1);
    struct sbox *b = lua_newuserdatauv(L, sizeof(*b), 1);
    b->ls = NULL;
    luaL_setmetatable(L, SESS_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, -1);
    ls->sref = luaL_ref(L, LUA_REGISTRYINDEX);
    b->ls = ls;
    if (ls->e->ref_connect == LUA_NOREF) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->e->ref_connect);
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    return 0;
}

/* Clears `s` and drops its reference: no allocation, so it cannot fail. */
static void sess_unref(struct lua_sess *ls)
{
    lua_State *L = ls->e->L;
    if (ls->sref == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->sref);
    struct sbox *b = lua_touserdata(L, -1);
    b->ls = NULL;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->sref);
    ls->sref = LUA_NOREF;
}

static int sess_call_close(lua_State *L)
{
    struct lua_sess *ls = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->e->ref_close);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->sref);
    lua_call(L, 1, 0);
    return 0;
}

static void sess_destroy(struct lua_sess *ls)
{
    struct lua_engine *e = ls->e;
    sess_unref(ls);
    for (int i = 0; i < 2; i++) {
        lua_buf_clear(&ls->d[i].hold);
        lua_buf_clear(&ls->d[i].pend);
    }
    free(ls);
    if (--e->live == 0 && e->dying) lua_engine_free(e);
}

static void copy_info(struct lua_sess *ls, const struct stage_session *info)
{
    ls->id = info->id;
    snprintf(ls->listener, sizeof(ls->listener), "%s", info->listener ? info->listener : "");
    snprintf(ls->client, sizeof(ls->client), "%s", info->client);
    snprintf(ls->dest_name, sizeof(ls->dest_name), "%s", info->dest_name);
    snprintf(ls->dest_addr, sizeof(ls->dest_addr), "%s", info->dest_addr);
    snprintf(ls->user, sizeof(ls->user), "%s", info->user);
}

struct lua_sess *lua_sess_new(struct lua_engine *e, const struct stage_session *info, char *err, size_t errlen)
{
    struct lua_sess *ls = calloc(1, sizeof(*ls));
    if (!ls) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ls->e = e;
    ls->refs = 1;
    ls->sref = LUA_NOREF;
    for (int i = 0; i < 2; i++) {
        ls->d[i].ls = ls;
        ls->d[i].dir = i;
    }
    copy_info(ls, info);
    e->live++;
    e->cur = ls;
    int rc = lua_engine_pcall(e, sess_open, ls, err, errlen);
    e->cur = NULL;
    if (rc < 0) {
        lua_sess_fail(ls, "on_connect", -1, err);
        sess_destroy(ls);
        return NULL;
    }
    return ls;
}

void lua_sess_stages(struct lua_sess *ls, const struct stage_ops **ops, void **up_state, void **down_state)
{
    *ops = &lua_filter_stage_ops;
    if (up_state) {
        *up_state = &ls->d[LUA_DIR_UP];
        ls->refs++;
    }
    if (down_state) {
        *down_state = &ls->d[LUA_DIR_DOWN];
        ls->refs++;
    }
}

void lua_sess_release(struct lua_sess *ls)
{
    char err[512];
    struct lua_engine *e = ls->e;
    if (--ls->refs > 0) return;
    if (e->ref_close != LUA_NOREF) {
        e->cur = ls;
        if (lua_engine_pcall(e, sess_call_close, ls, err, sizeof(err)) < 0) {
            ls->failed = 0;            /* on_close's failure is logged even after another */
            lua_sess_fail(ls, "on_close", -1, err);
        }
        e->cur = NULL;
    }
    sess_destroy(ls);
}
