/* lua_engine.c - one sandboxed lua_State per script: allocator with a cap,
 * instruction budget, sandboxed globals, protected calls. See lua_filter.h.
 *
 * Every Lua API call that may allocate runs inside lua_engine_pcall():
 * with a memory cap, an allocation can fail anywhere, and an unprotected
 * error would abort the process (Lua's panic).
 */
#include "stage/lua_int.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/log.h"

/* The count hook fires every HOOK_STEP instructions: often enough to stop
 * a loop within the budget's precision, rarely enough to cost nothing. */
#define HOOK_STEP 1000

static struct lua_engine *engine_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* Refuses growth past the cap. Lua then collects garbage and retries once,
 * and if that fails too raises a memory error that our pcall catches.
 * Shrinking and freeing never fail (Lua relies on that). */
static void *engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lua_engine *e = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        e->mem_used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > e->mem_cap - e->mem_used) return NULL;
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    e->mem_used = e->mem_used - old + nsize;
    return p;
}

/* Budget and soft memory cap, checked where it is safe to raise an error
 * that names the script's line (a failed allocation cannot). Over the soft
 * cap, a full collection first: garbage alone must not fail a script. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    struct lua_engine *e = engine_of(L);
    const char *what = NULL;
    e->left -= HOOK_STEP;
    if (e->left <= 0) {
        what = "instruction budget exceeded";
    } else if (e->mem_used > e->mem_soft) {
        lua_gc(L, LUA_GCCOLLECT);
        if (e->mem_used > e->mem_soft) what = "memory cap reached";
    }
    if (!what) return;
    lua_getinfo(L, "Sl", ar);
    lua_pushfstring(L, "%s:%d: %s", ar->short_src, ar->currentline, what);
    lua_error(L);
}

/* Lua shortens a long file name in messages to "...TAIL" (LUA_IDSIZE):
 * the operator gets the path as given instead. */
static void message_text(const struct lua_engine *e, const char *msg, char *err, size_t errlen)
{
    const char *colon = strchr(msg, ':');
    size_t tail = colon ? (size_t)(colon - msg) - 3 : 0, plen = strlen(e->path);
    if (colon && strncmp(msg, "...", 3) == 0 && colon - msg > 3 && tail <= plen &&
        strncmp(e->path + plen - tail, msg + 3, tail) == 0)
        snprintf(err, errlen, "%s%s", e->path, colon);
    else
        snprintf(err, errlen, "%s", msg);
}

static void error_text(struct lua_engine *e, int rc, char *err, size_t errlen)
{
    lua_State *L = e->L;
    if (rc == LUA_ERRMEM)
        snprintf(err, errlen, "%s: not enough memory (the filter's cap is %zu KiB)", e->path, e->mem_cap >> 10);
    else if (lua_type(L, -1) == LUA_TSTRING)
        message_text(e, lua_tostring(L, -1), err, errlen);
    else
        snprintf(err, errlen, "%s: error object is a %s value", e->path, luaL_typename(L, -1));
}

int lua_engine_pcall(struct lua_engine *e, lua_CFunction fn, void *arg, char *err, size_t errlen)
{
    lua_State *L = e->L;
    e->left = e->budget;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, arg);
    int rc = lua_pcall(L, 1, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    if (rc == LUA_OK) return 0;
    error_text(e, rc, err, errlen);
    lua_pop(L, 1);
    /* What the failed call left behind must not count against the next. */
    lua_gc(L, LUA_GCCOLLECT);
    return -1;
}

/* ---- sandbox ---- */

/* print(...) -> one log line, for the running session if there is one. */
static int sb_print(lua_State *L)
{
    struct lua_engine *e = engine_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (e->cur) lua_sess_log(e->cur, LOG_INFO, "lua", s, len);
    else if (log_enabled(LOG_INFO)) log_msg(LOG_INFO, "filter=%s print: %.*s", e->path, (int)len, s);
    return 0;
}

/* load() of text only: a binary chunk can break the VM's invariants. */
static int sb_load(lua_State *L)
{
    int n = lua_gettop(L);
    lua_settop(L, 4);                      /* so what is pushed next starts at 5 */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    if (n >= 4) lua_pushvalue(L, 4);       /* an explicit env, even nil */
    lua_call(L, n >= 4 ? 4 : 3, LUA_MULTRET);
    return lua_gettop(L) - 4;
}

/* No __gc: a finalizer runs whenever the collector does, outside any
 * hook's budget, and a loop in it would hang the worker. */
static int sb_setmetatable(lua_State *L)
{
    lua_pushliteral(L, "__gc");
    if (lua_type(L, 2) == LUA_TTABLE && lua_rawget(L, 2) != LUA_TNIL)
        return luaL_error(L, "__gc metamethods are not allowed in filters");
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* Replaces global `name` by fn, which gets the original as upvalue 1. */
static void wrap_global(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, name);
    lua_pushcclosure(L, fn, 1);
    lua_setglobal(L, name);
}

static void open_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        { LUA_GNAME, luaopen_base }, { LUA_STRLIBNAME, luaopen_string }, { LUA_TABLIBNAME, luaopen_table },
        { LUA_MATHLIBNAME, luaopen_math }, { LUA_UTF8LIBNAME, luaopen_utf8 },
    };
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    /* os: the clock only. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 2);
    lua_getfield(L, -2, "time");
    lua_setfield(L, -2, "time");
    lua_getfield(L, -2, "clock");
    lua_setfield(L, -2, "clock");
    lua_setglobal(L, "os");
    lua_pop(L, 1);
}

static void sandbox(lua_State *L)
{
    static const char *const gone[] = { "dofile", "loadfile", "require", "collectgarbage" };
    open_libs(L);
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        lua_pushnil(L);
        lua_setglobal(L, gone[i]);
    }
    lua_getglobal(L, LUA_STRLIBNAME);       /* also strings' __index */
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    wrap_global(L, "load", sb_load);
    wrap_global(L, "setmetatable", sb_setmetatable);
    lua_pushcfunction(L, sb_print);
    lua_setglobal(L, "print");
}

/* ---- loading ---- */

/* Global `name` as a hook: a function (ref), nil (LUA_NOREF) or an error. */
static int hook_ref(lua_State *L, struct lua_engine *e, const char *name)
{
    int t = lua_getglobal(L, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (t != LUA_TFUNCTION)
        return luaL_error(L, "%s: %s is a %s, expected a function", e->path, name, lua_typename(L, t));
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int engine_setup(lua_State *L)
{
    struct lua_engine *e = lua_touserdata(L, 1);
    sandbox(L);
    lua_sess_register(L);
    if (luaL_loadfilex(L, e->path, "t") != LUA_OK) return lua_error(L);
    lua_call(L, 0, 0);
    e->ref_connect = hook_ref(L, e, "on_connect");
    e->ref_data = hook_ref(L, e, "on_data");
    e->ref_close = hook_ref(L, e, "on_close");
    return 0;
}

static int engine_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_plain("lua: unprotected error: %s", msg ? msg : "?");
    abort();
}

struct lua_engine *lua_engine_new(const char *path, size_t mem_cap, char *err, size_t errlen)
{
    struct lua_engine *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    snprintf(e->path, sizeof(e->path), "%s", path);
    e->mem_cap = mem_cap ? mem_cap : LUA_FILTER_MEM_CAP;
    e->mem_soft = e->mem_cap - e->mem_cap / 8;
    e->budget = LUA_FILTER_BUDGET;
    e->ref_connect = e->ref_data = e->ref_close = LUA_NOREF;
    e->cur_dir = -1;
    if (!(e->L = lua_newstate(engine_alloc, e))) {
        snprintf(err, errlen, "%s: cannot create a Lua state", path);
        free(e);
        return NULL;
    }
    lua_atpanic(e->L, engine_panic);
    if (lua_engine_pcall(e, engine_setup, e, err, errlen) < 0) {
        lua_close(e->L);
        free(e);
        return NULL;
    }
    return e;
}

void lua_engine_set_budget(struct lua_engine *e, long instructions)
{
    e->budget = instructions > 0 ? instructions : LUA_FILTER_BUDGET;
}

size_t lua_engine_mem_used(const struct lua_engine *e)
{
    return e->mem_used;
}

void lua_engine_free(struct lua_engine *e)
{
    if (!e) return;
    if (e->live) {
        e->dying = 1;
        return;
    }
    lua_close(e->L);
    free(e);
}

int lua_filter_check(const char *path, char *err, size_t errlen)
{
    struct lua_engine *e = lua_engine_new(path, 0, err, errlen);
    if (!e) return -1;
    lua_engine_free(e);
    return 0;
}
