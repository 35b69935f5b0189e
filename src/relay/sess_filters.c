/* sess_filters.c - see sess_filters.h. */
#include "relay/sess_filters.h"

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "relay/rlistener-t.h"
#include "obs/log.h"
#include "relay/front.h"
#include "relay/pipe.h"
#include "stage/lua_filter.h"
#include "stage/rewrite.h"

int sess_filters_listener_start(struct relay_listener *wl, char *err, size_t errlen)
{
    if (!wl->cfg->filter_path[0]) return 0;
    wl->lua = lua_engine_new(wl->cfg->filter_path, 0, err, errlen);
    return wl->lua ? 0 : -1;
}

void sess_filters_listener_stop(struct relay_listener *wl)
{
    lua_engine_free(wl->lua);      /* waits for sessions still holding it */
    wl->lua = NULL;
}

/* The rewrite rules of one direction, if it has any. Bytes already waiting
 * up (early data) are the rules' input; down holds only the front-end's
 * reply by now, which no rule may touch. */
static int add_rewrite(struct session *s, int up)
{
    const struct stage_ops *ops;
    void *state;
    if (rewrite_stage_new(&s->wl->cfg->rewrite, up, &ops, &state) < 0) return -1;
    if (!state) return 0;
    return pipe_add_stage(up ? &s->up : &s->down, ops, state, up);
}

static void format_host_port(char *out, size_t outlen, const char *host, uint16_t port)
{
    char clean[256];
    log_sanitize(clean, sizeof(clean), host);
    snprintf(out, outlen, strchr(clean, ':') ? "[%s]:%u" : "%s:%u", clean, port);
}

/* What the script's `s` shows (sanitised: a script may log it as is). */
void sess_describe(const struct session *s, struct stage_session *info)
{
    const struct sess_target *dest = s->dest ? s->dest : s->target;
    memset(info, 0, sizeof(*info));
    info->id = s->id;
    info->listener = s->wl->cfg->name;
    net_addr_format(&s->client, info->client, sizeof(info->client));
    if (dest) format_host_port(info->dest_name, sizeof(info->dest_name), dest->host, dest->port);
    if (s->upstream.len) net_addr_format(&s->upstream, info->dest_addr, sizeof(info->dest_addr));
    const char *user = s->front && s->front->user ? s->front->user(s) : NULL;
    if (user) log_sanitize(info->user, sizeof(info->user), user);
}

/* The Lua filter's two stages, sharing one per-session object: on_connect
 * runs now, on_close when the last stage goes. */
static int add_lua(struct session *s)
{
    struct stage_session info;
    char err[512];
    const struct stage_ops *ops;
    void *up, *down;
    sess_describe(s, &info);
    struct lua_sess *ls = lua_sess_new(s->wl->lua, &info, err, sizeof(err));
    if (!ls) return -2;
    lua_sess_stages(ls, &ops, &up, &down);
    lua_sess_release(ls);
    /* Each call owns its state whatever it returns. */
    int r = pipe_add_stage(&s->up, ops, up, 1);
    return pipe_add_stage(&s->down, ops, down, 0) < 0 ? -1 : r;
}

int sess_filters_attach(struct session *s)
{
    if (s->wl->cfg->rewrite.n && (add_rewrite(s, 1) < 0 || add_rewrite(s, 0) < 0)) return -1;
    return s->wl->lua ? add_lua(s) : 0;
}
