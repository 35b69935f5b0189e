/* lua_filter.h - Lua 5.4 filters (--filter FILE.lua) as STAGE_FILTER stages.
 *
 * An engine is one sandboxed lua_State running one script: one per worker
 * per listener, so nothing here takes a lock. A session gets a lua_sess,
 * and the lua_sess two stages (up: client -> server, down: server ->
 * client) that call the script's on_data hook on the bytes going by. The
 * script's hooks and what `s` offers are in docs/FILTERS.md.
 *
 * Every hook call runs protected, under an instruction budget and the
 * engine's memory cap: a call that fails (runtime error, budget, memory)
 * ends that session (STAGE_ERROR, one log line with the Lua message and
 * FILE:LINE) and leaves the engine usable for every other session.
 *
 * Lifetimes: a lua_sess is reference counted. lua_sess_new() returns the
 * caller's reference; lua_sess_stages() hands out one reference per stage
 * state, dropped by ops->free(state) (whether or not the stage was ever
 * put in a chain). The last reference dropped runs on_close once and
 * releases the session's Lua objects. So on_close runs exactly once per
 * session whose on_connect succeeded, however many stages were made.
 */
#ifndef FERRY_LUA_FILTER_H
#define FERRY_LUA_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "stage/stage.h"

#define LUA_FILTER_MEM_CAP (64u << 20)         /* default bytes per engine */
#define LUA_FILTER_BUDGET 10000000L            /* default VM instructions per hook call */
#define LUA_FILTER_HOLD_MAX (64u * 1024u)      /* input held per direction (on_data -> nil) */
#define LUA_FILTER_OUT_MAX (1u << 20)          /* on_data's output per call */
#define LUA_FILTER_QUEUE_MAX (1u << 20)        /* s:send() bytes waiting per direction */

enum lua_dir_id { LUA_DIR_UP = 0, LUA_DIR_DOWN = 1 };

struct lua_engine;
struct lua_sess;

/* Loads path (text only) into a new sandboxed state, runs its main chunk
 * and finds its hooks. mem_cap: bytes for the whole state (0 = the
 * default). NULL with a one-line reason in err ("FILE:LINE: message" for a
 * syntax or runtime error at load). */
struct lua_engine *lua_engine_new(const char *path, size_t mem_cap, char *err, size_t errlen);
/* Instructions one hook call may run (default LUA_FILTER_BUDGET). */
void lua_engine_set_budget(struct lua_engine *e, long instructions);
/* Bytes the state holds now (the allocator's count). */
size_t lua_engine_mem_used(const struct lua_engine *e);
/* Frees the engine; if sessions still hold it, when the last is released. */
void lua_engine_free(struct lua_engine *e);

/* What config and `ferry check` run: lua_engine_new() and free. 0, or -1
 * with the reason in err. */
int lua_filter_check(const char *path, char *err, size_t errlen);

/* A session's filter: copies info, runs on_connect(s). NULL on failure,
 * with the reason in err, already logged (the session ends filter_error);
 * on_close is then not run. */
struct lua_sess *lua_sess_new(struct lua_engine *e, const struct stage_session *info, char *err, size_t errlen);
/* The session's two stages: *ops is the same for both; each state pointer
 * given (non-NULL) receives a state holding one reference, to be freed
 * with (*ops)->free exactly once. Call once per session. */
void lua_sess_stages(struct lua_sess *ls, const struct stage_ops **ops, void **up_state, void **down_state);
/* The ops for states of lua_sess_stages() run as a toxic (role
 * STAGE_TOXICS: behind the filters, in front of an encoder). */
extern const struct stage_ops lua_toxic_stage_ops;
/* Drops the caller's reference (from lua_sess_new). */
void lua_sess_release(struct lua_sess *ls);

#endif
