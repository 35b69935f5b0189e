/* test_lua_filter.c - unit tests for the Lua filter stages (stage/lua_*.c).
 *
 * The stages are driven as the pump would, with plain arrays through
 * struct stage_io and an explicit clock. Scripts are written to temporary
 * files, and the examples under examples/filters/ are loaded from the
 * repository (make unit runs from its root).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "obs/log.h"
#include "stage/lua_filter.h"

#define UP LUA_DIR_UP
#define DOWN LUA_DIR_DOWN

/* ---- helpers ---- */

struct rig {
    char path[64];
    struct lua_engine *e;
    struct lua_sess *ls;
    const struct stage_ops *ops;
    void *st[2];
    uint64_t now;
    uint8_t *out;              /* what came out, per call of feed() */
    size_t outlen;
};

static void write_script(char *path, size_t pathlen, const char *src)
{
    snprintf(path, pathlen, "/tmp/ferry-lua-XXXXXX.lua");
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
}

static struct lua_engine *engine_at(const char *path, size_t cap)
{
    char err[512] = "";
    struct lua_engine *e = lua_engine_new(path, cap, err, sizeof(err));
    if (!e) fail_msg("lua_engine_new(%s): %s", path, err);
    return e;
}

static void open_sess(struct rig *r)
{
    struct stage_session info = { .id = 42, .listener = "web" };
    char err[512] = "";
    snprintf(info.client, sizeof(info.client), "127.0.0.1:5000");
    snprintf(info.dest_name, sizeof(info.dest_name), "example.com:80");
    snprintf(info.dest_addr, sizeof(info.dest_addr), "192.0.2.1:80");
    snprintf(info.user, sizeof(info.user), "alice");
    r->ls = lua_sess_new(r->e, &info, err, sizeof(err));
    if (!r->ls) fail_msg("lua_sess_new: %s", err);
    lua_sess_stages(r->ls, &r->ops, &r->st[UP], &r->st[DOWN]);
    lua_sess_release(r->ls);
    r->now = 1000000;
}

/* A rig over a script given as text (cap 0: the default). */
static struct rig *rig_src(const char *src, size_t cap)
{
    struct rig *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    write_script(r->path, sizeof(r->path), src);
    r->e = engine_at(r->path, cap);
    open_sess(r);
    r->out = malloc(4u << 20);
    assert_non_null(r->out);
    return r;
}

static struct rig *rig_file(const char *path)
{
    struct rig *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->e = engine_at(path, 0);
    open_sess(r);
    r->out = malloc(4u << 20);
    assert_non_null(r->out);
    return r;
}

static void close_stages(struct rig *r)
{
    for (int d = 0; d < 2; d++)
        if (r->st[d]) r->ops->free(r->st[d]);
    r->st[UP] = r->st[DOWN] = NULL;
}

static void rig_free(struct rig *r)
{
    close_stages(r);
    lua_engine_free(r->e);
    if (r->path[0]) unlink(r->path);
    free(r->out);
    free(r);
}

/* One process() call. */
static enum stage_status step(struct rig *r, int dir, const void *in, size_t inlen, int eof, size_t outcap,
                              struct stage_io *io)
{
    static uint8_t buf[1u << 20];
    memset(io, 0, sizeof(*io));
    io->in = in;
    io->inlen = inlen;
    io->in_eof = eof;
    io->out = buf;
    io->outcap = outcap;
    io->now_us = r->now;
    enum stage_status st = r->ops->process(r->st[dir], io);
    assert_true(io->used <= inlen);
    assert_true(io->made <= outcap);
    return st;
}

/* Feeds in[0, len) to dir's stage at most `piece` bytes a call (then its
 * end, if eof), appending the output to r->out, until the stage stops
 * making progress or says anything but STAGE_OK. *out_eof: the stage
 * said its output ended. */
static enum stage_status feed(struct rig *r, int dir, const char *in, size_t len, size_t piece, int eof,
                              size_t outcap, int *out_eof)
{
    struct stage_io io;
    size_t off = 0;
    r->outlen = 0;
    *out_eof = 0;
    for (;;) {
        size_t n = len - off < piece ? len - off : piece;
        enum stage_status st = step(r, dir, in + off, n, eof && off + n == len, outcap, &io);
        memcpy(r->out + r->outlen, io.out, io.made);
        r->outlen += io.made;
        off += io.used;
        if (st != STAGE_OK) return st;
        if (io.out_eof) {
            *out_eof = 1;
            return st;
        }
        if (!io.used && !io.made) return st;
    }
}

static void assert_out(const struct rig *r, const char *want)
{
    if (r->outlen != strlen(want) || memcmp(r->out, want, r->outlen) != 0)
        fail_msg("output '%.*s', expected '%s'", (int)r->outlen, r->out, want);
}

/* ---- pass-through and rewriting ---- */

static void test_pass_through(void **unused)
{
    struct rig *r = rig_src("function on_connect(s) s.state.n = 1 end\n", 0);
    int eof;
    assert_int_equal(feed(r, UP, "hello world", 11, 3, 1, 4, &eof), STAGE_OK);
    assert_out(r, "hello world");
    assert_true(eof);
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), UINT64_MAX);
    rig_free(r);
}

static void test_rewrite_and_session_fields(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk, eof)\n"
                            "  return table.concat({dir, s.id, s.listener, s.client, s.dest, s.dest_addr,\n"
                            "                       s.user, chunk:upper()}, ' ')\n"
                            "end\n", 0);
    int eof;
    assert_int_equal(feed(r, DOWN, "abc", 3, 100, 0, 4096, &eof), STAGE_OK);
    assert_out(r, "down 42 web 127.0.0.1:5000 example.com:80 192.0.2.1:80 alice ABC");
    rig_free(r);
}

static void test_example_add_header(void **unused)
{
    static const char req[] = "GET /x HTTP/1.1\r\nHost: h\r\n\r\nPOST /y HTTP/1.1\r\nContent-Length: 4\r\n\r\n"
                              "\r\n\r\nGET /z HTTP/1.1\r\n\r\n";
    static const char want[] = "GET /x HTTP/1.1\r\nX-Via-Ferry: 1\r\nHost: h\r\n\r\n"
                               "POST /y HTTP/1.1\r\nX-Via-Ferry: 1\r\nContent-Length: 4\r\n\r\n\r\n\r\n"
                               "GET /z HTTP/1.1\r\nX-Via-Ferry: 1\r\n\r\n";
    /* Every piece size: a header split anywhere is still rewritten once. */
    for (size_t piece = 1; piece <= sizeof(req); piece++) {
        struct rig *r = rig_file("examples/filters/add_header.lua");
        int eof;
        assert_int_equal(feed(r, UP, req, sizeof(req) - 1, piece, 0, 4096, &eof), STAGE_OK);
        assert_out(r, want);
        assert_int_equal(feed(r, DOWN, "HTTP/1.1 200 OK\r\n\r\n", 19, 5, 0, 4096, &eof), STAGE_OK);
        assert_out(r, "HTTP/1.1 200 OK\r\n\r\n");
        rig_free(r);
    }
}

/* ---- holding ---- */

static void test_hold_then_release(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk, eof)\n"
                            "  if not chunk:find('!') then return nil end\n"
                            "  return '[' .. chunk .. ']'\n"
                            "end\n", 0);
    int eof;
    assert_int_equal(feed(r, UP, "ab", 2, 1, 0, 100, &eof), STAGE_OK);
    assert_out(r, "");
    assert_int_equal(feed(r, UP, "c!d", 3, 2, 0, 100, &eof), STAGE_OK);
    assert_out(r, "[abc!]");
    assert_int_equal(feed(r, UP, "e!", 2, 1, 0, 100, &eof), STAGE_OK);
    assert_out(r, "[de!]");
    rig_free(r);
}

static void test_hold_cap_is_an_error(void **unused)
{
    struct rig *r = rig_src("function on_data() return nil end\n", 0);
    size_t len = LUA_FILTER_HOLD_MAX + 5000;
    char *big = malloc(len);
    struct stage_io io;
    size_t used = 0;
    enum stage_status st = STAGE_OK;
    memset(big, 'x', len);
    while (st == STAGE_OK && used < len) {
        st = step(r, UP, big + used, len - used > 10000 ? 10000 : len - used, 0, 100, &io);
        used += io.used;
        assert_int_equal(io.made, 0);
    }
    assert_int_equal(st, STAGE_ERROR);
    assert_int_equal(used, LUA_FILTER_HOLD_MAX);   /* no input taken past the cap */
    assert_int_equal(step(r, DOWN, "a", 1, 0, 100, &io), STAGE_ERROR);
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), 0);
    free(big);
    rig_free(r);
}

static void test_eof(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk, eof)\n"
                            "  if not eof then return nil end\n"
                            "  if dir == 'down' then return nil end\n"
                            "  return chunk:upper() .. '<eof>'\n"
                            "end\n", 0);
    int eof;
    assert_int_equal(feed(r, UP, "ab", 2, 1, 0, 100, &eof), STAGE_OK);
    assert_false(eof);
    assert_int_equal(feed(r, UP, "", 0, 1, 1, 100, &eof), STAGE_OK);
    assert_out(r, "AB<eof>");
    assert_true(eof);
    /* nil at the end drops what was held */
    assert_int_equal(feed(r, DOWN, "zz", 2, 2, 1, 100, &eof), STAGE_OK);
    assert_out(r, "");
    assert_true(eof);
    rig_free(r);
}

static void test_example_line_buffer(void **unused)
{
    static const char in[] = "one\ntwo and\nthr";
    struct rig *r = rig_file("examples/filters/line_buffer.lua");
    int eof;
    assert_int_equal(feed(r, UP, in, sizeof(in) - 1, 1, 0, 100, &eof), STAGE_OK);
    assert_out(r, "ONE\nTWO AND\n");
    assert_int_equal(feed(r, UP, "ee\nfo", 5, 1, 1, 100, &eof), STAGE_OK);
    assert_out(r, "THREE\nFO");
    assert_true(eof);
    rig_free(r);
}

/* ---- s:send, s:close, s:reset, s:delay ---- */

static void test_send_other_direction(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk, eof)\n"
                            "  if dir == 'up' then s:send('down', 'pong:' .. chunk) return '' end\n"
                            "  return chunk\n"
                            "end\n", 0);
    int eof;
    struct stage_io io;
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), UINT64_MAX);
    assert_int_equal(feed(r, UP, "ping", 4, 4, 0, 100, &eof), STAGE_OK);
    assert_out(r, "");
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), 0);     /* "now" */
    assert_int_equal(step(r, DOWN, NULL, 0, 0, 3, &io), STAGE_OK);
    assert_memory_equal(io.out, "pon", 3);
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), 0);
    /* Input waits while injected bytes are queued, and follows them. */
    assert_int_equal(step(r, DOWN, "srv", 3, 0, 6, &io), STAGE_OK);
    assert_int_equal(io.used, 0);
    assert_memory_equal(io.out, "g:ping", 6);
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), UINT64_MAX);
    assert_int_equal(feed(r, DOWN, "srv", 3, 3, 0, 100, &eof), STAGE_OK);
    assert_out(r, "srv");
    rig_free(r);
}

static void test_close_after_send(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk, eof)\n"
                            "  s:send('down', 'bye') s:close() return chunk\n"
                            "end\n", 0);
    struct stage_io io;
    assert_int_equal(step(r, UP, "q", 1, 0, 100, &io), STAGE_OK);   /* down still has bytes */
    assert_int_equal(io.made, 1);
    assert_int_equal(step(r, UP, "more", 4, 0, 100, &io), STAGE_OK);
    assert_int_equal(io.used, 0);                                   /* closing: no input */
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), 0);
    assert_int_equal(step(r, DOWN, NULL, 0, 0, 100, &io), STAGE_CLOSE);
    assert_memory_equal(io.out, "bye", 3);
    assert_int_equal(io.made, 3);
    assert_int_equal(r->ops->next_wakeup(r->st[UP]), 0);
    assert_int_equal(step(r, UP, NULL, 0, 0, 100, &io), STAGE_CLOSE);
    rig_free(r);
}

static void test_close_in_on_connect(void **unused)
{
    struct rig *r = rig_src("function on_connect(s) s:send('down', 'go away\\n') s:close() end\n", 0);
    struct stage_io io;
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), 0);
    assert_int_equal(step(r, UP, "x", 1, 0, 100, &io), STAGE_OK);
    assert_int_equal(step(r, DOWN, NULL, 0, 0, 100, &io), STAGE_CLOSE);
    assert_memory_equal(io.out, "go away\n", 8);
    rig_free(r);
}

static void test_reset(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk) if chunk == 'bad' then s:reset() end return chunk end\n", 0);
    struct stage_io io;
    assert_int_equal(step(r, UP, "ok", 2, 0, 100, &io), STAGE_OK);
    assert_int_equal(step(r, UP, "bad", 3, 0, 100, &io), STAGE_RESET);
    assert_int_equal(io.made, 0);
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), 0);
    assert_int_equal(step(r, DOWN, NULL, 0, 0, 100, &io), STAGE_RESET);
    rig_free(r);
}

static void test_delay(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk) s:delay(100) return chunk end\n", 0);
    struct stage_io io;
    uint64_t t0 = r->now;
    assert_int_equal(step(r, UP, "abc", 3, 0, 100, &io), STAGE_OK);
    assert_int_equal(io.used, 3);
    assert_int_equal(io.made, 0);
    assert_int_equal(r->ops->next_wakeup(r->st[UP]), t0 + 100000);
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), UINT64_MAX);
    r->now = t0 + 99999;
    assert_int_equal(step(r, UP, "def", 3, 0, 100, &io), STAGE_OK);
    assert_int_equal(io.used + io.made, 0);
    r->now = t0 + 100000;
    assert_int_equal(step(r, UP, "def", 3, 0, 100, &io), STAGE_OK);
    assert_int_equal(io.made, 3);
    assert_memory_equal(io.out, "abc", 3);
    assert_int_equal(io.used, 3);       /* taken, and held by its own s:delay() */
    assert_int_equal(r->ops->next_wakeup(r->st[UP]), r->now + 100000);
    rig_free(r);
}

static void test_delay_from_on_connect_both_ways(void **unused)
{
    struct rig *r = rig_src("function on_connect(s) s:delay(5) end\n", 0);
    struct stage_io io;
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), 0);   /* to start the delay */
    assert_int_equal(step(r, DOWN, "x", 1, 0, 100, &io), STAGE_OK);
    assert_int_equal(io.made + io.used, 0);
    assert_int_equal(r->ops->next_wakeup(r->st[DOWN]), r->now + 5000);
    r->now += 5000;
    assert_int_equal(step(r, DOWN, "x", 1, 0, 100, &io), STAGE_OK);
    assert_int_equal(io.made, 1);
    rig_free(r);
}

/* ---- output bigger than outcap ---- */

static void test_output_carried_over(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk) return chunk:rep(10) end\n", 0);
    struct stage_io io;
    size_t total = 0;
    char want[41];
    assert_int_equal(step(r, UP, "0123", 4, 0, 16, &io), STAGE_OK);
    assert_int_equal(io.used, 4);
    for (int i = 0; i < 10; i++) memcpy(want + 4 * i, "0123", 4);
    memcpy(r->out, io.out, io.made);
    total = io.made;
    /* While output is carried, input is not taken. */
    assert_int_equal(step(r, UP, "zz", 2, 0, 16, &io), STAGE_OK);
    assert_int_equal(io.used, 0);
    memcpy(r->out + total, io.out, io.made);
    total += io.made;
    while (r->ops->next_wakeup(r->st[UP]) == 0) {
        assert_int_equal(step(r, UP, NULL, 0, 0, 16, &io), STAGE_OK);
        memcpy(r->out + total, io.out, io.made);
        total += io.made;
    }
    assert_int_equal(total, 40);
    assert_memory_equal(r->out, want, 40);
    rig_free(r);
}

static void test_output_too_big(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk) return ('x'):rep(2 * 1024 * 1024) end\n", 0);
    struct stage_io io;
    assert_int_equal(step(r, UP, "a", 1, 0, 16, &io), STAGE_ERROR);
    assert_int_equal(io.made, 0);
    rig_free(r);
}

/* ---- failures and limits ---- */

static void test_runtime_error(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk)\n  return chunk .. nil\nend\n", 0);
    struct stage_io io;
    assert_int_equal(step(r, UP, "a", 1, 0, 16, &io), STAGE_ERROR);
    rig_free(r);
}

static void test_infinite_loop(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk)\n  while true do end\nend\n", 0);
    struct stage_io io;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(step(r, UP, "a", 1, 0, 16, &io), STAGE_ERROR);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_true(b.tv_sec - a.tv_sec < 10);
    /* The engine serves the next session. */
    close_stages(r);
    open_sess(r);
    assert_int_equal(step(r, DOWN, "b", 1, 0, 16, &io), STAGE_ERROR);
    rig_free(r);
}

static void test_budget_is_per_call(void **unused)
{
    /* About 300k instructions a call: fine under a 1M budget, many times. */
    struct rig *r = rig_src("function on_data(s, dir, chunk)\n"
                            "  local n = 0 for i = 1, 100000 do n = n + i end return chunk\nend\n", 0);
    struct stage_io io;
    lua_engine_set_budget(r->e, 1000000);
    for (int i = 0; i < 20; i++) assert_int_equal(step(r, UP, "a", 1, 0, 16, &io), STAGE_OK);
    lua_engine_set_budget(r->e, 100000);
    assert_int_equal(step(r, UP, "a", 1, 0, 16, &io), STAGE_ERROR);
    rig_free(r);
}

static void test_memory_cap(void **unused)
{
    static const char *const scripts[] = {
        /* many small allocations: the hook stops it, with a line */
        "function on_data(s, dir, chunk)\n  local t = {} while true do t[#t + 1] = chunk .. #t end\nend\n",
        /* one huge allocation: the allocator refuses it */
        "function on_data(s, dir, chunk)\n  return chunk:rep(1024 * 1024 * 1024)\nend\n",
        /* kept across sessions in a global */
        "keep = {}\nfunction on_data(s, dir, chunk)\n  for i = 1, 1e6 do keep[#keep + 1] = chunk .. i end\nend\n",
    };
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        struct rig *r = rig_src(scripts[i], 4u << 20);
        struct stage_io io;
        assert_int_equal(step(r, UP, "abcdefgh", 8, 0, 16, &io), STAGE_ERROR);
        assert_true(lua_engine_mem_used(r->e) <= (4u << 20));
        /* A new session still gets as far as its hook. */
        close_stages(r);
        open_sess(r);
        assert_int_equal(step(r, DOWN, "b", 1, 0, 16, &io), STAGE_ERROR);
        rig_free(r);
    }
}

static void test_memory_cap_engine_recovers(void **unused)
{
    struct rig *r = rig_src("function on_data(s, dir, chunk)\n"
                            "  if chunk == 'boom' then local t = {} while true do t[#t + 1] = {} end end\n"
                            "  return chunk\nend\n", 4u << 20);
    struct stage_io io;
    assert_int_equal(step(r, UP, "boom", 4, 0, 16, &io), STAGE_ERROR);
    for (int i = 0; i < 5; i++) {
        close_stages(r);
        open_sess(r);
        int eof;
        assert_int_equal(feed(r, UP, "fine", 4, 4, 1, 16, &eof), STAGE_OK);
        assert_out(r, "fine");
    }
    rig_free(r);
}

static void test_sessions_do_not_leak(void **unused)
{
    struct rig *r = rig_src("function on_connect(s) s.state.big = ('x'):rep(100000) end\n"
                            "function on_data(s, dir, chunk) s.state.last = chunk return chunk end\n", 4u << 20);
    struct stage_io io;
    for (int i = 0; i < 500; i++) {
        assert_int_equal(step(r, UP, "a", 1, 0, 16, &io), STAGE_OK);
        close_stages(r);
        open_sess(r);
    }
    assert_true(lua_engine_mem_used(r->e) < (2u << 20));
    rig_free(r);
}

static void test_on_connect_error(void **unused)
{
    char path[64], err[512] = "";
    struct stage_session info = { .id = 1, .listener = "l" };
    write_script(path, sizeof(path), "function on_connect(s)\n  error('no thanks')\nend\n"
                                     "function on_close(s) closed = true end\n");
    struct lua_engine *e = engine_at(path, 0);
    assert_null(lua_sess_new(e, &info, err, sizeof(err)));
    char want[128];
    snprintf(want, sizeof(want), "%s:2: no thanks", path);
    assert_string_equal(err, want);
    lua_engine_free(e);
    unlink(path);
}

/* on_close runs once, when the last of the three references goes, with one
 * stage or two. A later session reads the count. */
static void test_on_close_once(void **unused)
{
    struct rig *r = rig_src("closes = 0\n"
                            "function on_connect(s) s:send('down', tostring(closes)) end\n"
                            "function on_close(s) closes = closes + 1 end\n", 0);
    char err[256];
    struct stage_session info = { .id = 2, .listener = "l" };
    struct stage_io io;
    const struct stage_ops *ops;
    void *up;
    /* Only one stage made, and it freed before the caller's release. */
    struct lua_sess *ls = lua_sess_new(r->e, &info, err, sizeof(err));
    assert_non_null(ls);
    lua_sess_stages(ls, &ops, &up, NULL);
    ops->free(up);
    lua_sess_release(ls);
    /* No stage at all. */
    ls = lua_sess_new(r->e, &info, err, sizeof(err));
    assert_non_null(ls);
    lua_sess_release(ls);
    /* The rig's session still open: 2 closed so far. */
    close_stages(r);
    open_sess(r);
    assert_int_equal(step(r, DOWN, NULL, 0, 0, 16, &io), STAGE_OK);
    assert_memory_equal(io.out, "3", 1);
    assert_int_equal(io.made, 1);
    rig_free(r);
}

static void test_stale_session_object(void **unused)
{
    struct rig *r = rig_src("function on_connect(s) if old then old:send('up', 'x') end old = s end\n", 0);
    char err[256] = "";
    struct stage_session info = { .id = 3, .listener = "l" };
    close_stages(r);
    assert_null(lua_sess_new(r->e, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "session is over"));
    rig_free(r);
}

static void test_engine_freed_before_sessions(void **unused)
{
    struct rig *r = rig_src("function on_close(s) end\n", 0);
    lua_engine_free(r->e);        /* the session still holds it */
    r->e = NULL;
    close_stages(r);              /* on_close runs, then the engine goes */
    rig_free(r);
}

/* ---- loading ---- */

static void test_syntax_error(void **unused)
{
    char path[64], err[512] = "", want[128];
    write_script(path, sizeof(path), "function on_data(s)\n  return 1 +\nend\n");
    assert_null(lua_engine_new(path, 0, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:3: ", path);
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("'%s' does not start with '%s'", err, want);
    assert_null(strchr(err, '\n'));
    assert_int_equal(lua_filter_check(path, err, sizeof(err)), -1);
    unlink(path);
    assert_int_equal(lua_filter_check("/nonexistent.lua", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent.lua"));
    assert_int_equal(lua_filter_check("examples/filters/redis_readonly.lua", err, sizeof(err)), 0);
}

static void test_load_errors(void **unused)
{
    static const char *const bad[] = {
        "on_data = 5\n",                          /* a hook that is not a function */
        "while true do end\n",                    /* the main chunk has a budget too */
        "error('at load')\n",
    };
    char path[64], err[512];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_script(path, sizeof(path), bad[i]);
        err[0] = '\0';
        assert_int_equal(lua_filter_check(path, err, sizeof(err)), -1);
        assert_non_null(strstr(err, path));
        unlink(path);
    }
}

static void test_sandbox(void **unused)
{
    static const char src[] =
        "assert(io == nil and debug == nil and package == nil and require == nil)\n"
        "assert(dofile == nil and loadfile == nil and coroutine == nil)\n"
        "assert(os.execute == nil and os.getenv == nil and os.remove == nil and os.exit == nil)\n"
        "assert(type(os.time()) == 'number' and type(os.clock()) == 'number')\n"
        "assert(string.dump == nil and ('x').dump == nil)\n"
        "local f, msg = load('\\27LuaT\\0')\n"
        "assert(f == nil and msg:find('binary'), msg)\n"
        "f, msg = load('\\27LuaT\\0', 'b', 'b')\n"
        "assert(f == nil and msg:find('binary'), msg)\n"
        "assert(load('return 1 + 1')() == 2)\n"
        "assert(load('return x', 'c', 't', { x = 7 })() == 7)\n"
        "assert(not pcall(setmetatable, {}, { __gc = function() end }))\n"
        "assert(getmetatable(setmetatable({}, { __index = {} })))\n"
        "assert(utf8.char(72) == 'H' and math.max(1, 2) == 2 and table.concat({ 'a' }) == 'a')\n"
        "print('sandbox', 'ok')\n"
        "function on_connect(s)\n"
        "  assert(getmetatable(s) == 'ferry.session')\n"
        "  assert(not pcall(function() s.id = 5 end))\n"
        "  print('in a session')\n"
        "  s:log('a line with = and \\n in it')\n"
        "end\n";
    struct rig *r = rig_src(src, 0);
    rig_free(r);
}

/* ---- the other examples ---- */

static void test_example_redis_readonly(void **unused)
{
    static const char set[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    static const char get[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    static const char ro[] = "-READONLY You can't write against a read only replica.\r\n";
    char both[256];
    int eof;
    snprintf(both, sizeof(both), "%s%s%s", get, set, "incr x\r\n");
    for (size_t piece = 1; piece <= strlen(both); piece++) {
        struct rig *r = rig_file("examples/filters/redis_readonly.lua");
        struct stage_io io;
        assert_int_equal(feed(r, UP, both, strlen(both), piece, 0, 4096, &eof), STAGE_OK);
        assert_out(r, get);
        char want[256];
        snprintf(want, sizeof(want), "%s%s", ro, ro);
        assert_int_equal(step(r, DOWN, NULL, 0, 0, 4096, &io), STAGE_OK);
        assert_int_equal(io.made, strlen(want));
        assert_memory_equal(io.out, want, strlen(want));
        assert_int_equal(feed(r, DOWN, "$1\r\nv\r\n", 7, 7, 0, 4096, &eof), STAGE_OK);
        assert_out(r, "$1\r\nv\r\n");
        rig_free(r);
    }
}

static void test_example_first_line_logger(void **unused)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for (size_t piece = 1; piece < sizeof(req); piece += 3) {
        struct rig *r = rig_file("examples/filters/first_line_logger.lua");
        int eof;
        assert_int_equal(feed(r, UP, req, sizeof(req) - 1, piece, 1, 4096, &eof), STAGE_OK);
        assert_out(r, req);
        assert_true(eof);
        rig_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pass_through),
        cmocka_unit_test(test_rewrite_and_session_fields),
        cmocka_unit_test(test_example_add_header),
        cmocka_unit_test(test_hold_then_release),
        cmocka_unit_test(test_hold_cap_is_an_error),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_example_line_buffer),
        cmocka_unit_test(test_send_other_direction),
        cmocka_unit_test(test_close_after_send),
        cmocka_unit_test(test_close_in_on_connect),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_delay_from_on_connect_both_ways),
        cmocka_unit_test(test_output_carried_over),
        cmocka_unit_test(test_output_too_big),
        cmocka_unit_test(test_runtime_error),
        cmocka_unit_test(test_infinite_loop),
        cmocka_unit_test(test_budget_is_per_call),
        cmocka_unit_test(test_memory_cap),
        cmocka_unit_test(test_memory_cap_engine_recovers),
        cmocka_unit_test(test_sessions_do_not_leak),
        cmocka_unit_test(test_on_connect_error),
        cmocka_unit_test(test_on_close_once),
        cmocka_unit_test(test_stale_session_object),
        cmocka_unit_test(test_engine_freed_before_sessions),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_sandbox),
        cmocka_unit_test(test_example_redis_readonly),
        cmocka_unit_test(test_example_first_line_logger),
    };
    log_set_level(LOG_QUIET);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
