/* lua_int.h - what the Lua filter's files share (not for other modules).
 *
 * lua_engine.c: the state, its allocator, sandbox, budget and protected
 * calls. lua_sess.c: a session and the script's `s`. lua_filter.c: the
 * stages that feed on_data.
 */
#ifndef FERRY_LUA_INT_H
#define FERRY_LUA_INT_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "stage/lua_filter.h"

struct lua_engine {
    lua_State *L;
    char path[256];
    size_t mem_used, mem_cap;
    size_t mem_soft;           /* a running hook errors (with its line) past this */
    long budget, left;         /* instructions per call; left in this call */
    int ref_connect, ref_data, ref_close;   /* registry refs, LUA_NOREF: none */
    struct lua_sess *cur;      /* session of the running hook (print, s:delay) */
    int cur_dir;               /* its direction, -1 outside on_data */
    unsigned live;             /* sessions not yet released */
    int dying;                 /* lua_engine_free() came while some lived */
};

/* Bytes waiting: data[off, len). Allocated while not empty. */
struct lua_buf {
    uint8_t *data;
    size_t off, len, cap;
};

struct lua_dir {
    struct lua_sess *ls;
    int dir;                   /* enum lua_dir_id */
    struct lua_buf hold;       /* input on_data returned nil for */
    struct lua_buf pend;       /* output not given to the pump yet */
    unsigned delay_req_ms;     /* s:delay() not yet turned into a time */
    uint64_t delay_until;      /* output held until then (0: not held) */
    int ended;                 /* the input's end went through on_data */
    int eof_out;               /* the stage said out_eof: nothing more goes out */
};

struct lua_sess {
    struct lua_engine *e;
    struct lua_dir d[2];
    int refs;
    int sref;                  /* registry ref of `s`, LUA_NOREF before/after */
    int closing, reset, failed;
    uint64_t id;
    char listener[64], client[64], dest_name[256], dest_addr[64], user[256];
};

/* Runs fn(L) with arg as its only (light userdata) argument, protected,
 * under the budget. 0, or -1 with the Lua message (FILE:LINE: ...). */
int lua_engine_pcall(struct lua_engine *e, lua_CFunction fn, void *arg, char *err, size_t errlen);

/* The stages' ops (lua_filter.c). */
extern const struct stage_ops lua_filter_stage_ops;

/* The session's `s` metatable (lua_sess.c), made at engine creation. */
void lua_sess_register(lua_State *L);

/* Appends n bytes to b, up to max bytes held in all. 0, or -1 (too much or
 * no memory). */
int lua_buf_add(struct lua_buf *b, const void *p, size_t n, size_t max);
void lua_buf_clear(struct lua_buf *b);
static inline size_t lua_buf_len(const struct lua_buf *b) { return b->len - b->off; }

/* Log lines naming the session; text made safe for one line (see
 * lua_sess.c). */
void lua_sess_log(const struct lua_sess *ls, int level, const char *what, const char *text, size_t len);
/* A failed hook: marks the session failed and logs why. */
void lua_sess_fail(struct lua_sess *ls, const char *hook, int dir, const char *why);

#endif
