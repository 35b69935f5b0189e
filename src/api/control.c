/* control.c - see control.h. */
#include "api/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cli.h"
#include "config/options.h"
#include "server/worker.h"
#include "net/sock.h"
#include "obs/log.h"

/* One proxy. The config the workers read (`cfg`) is either the configured
 * one (read-only, main's) or our own copy (`own`), made when the listen
 * address or upstream changes; a replaced copy is freed once every worker
 * has switched (rt_retarget returns). A copy shares users and the client
 * ACL with the configured listener, but owns its destination ACL (the
 * default denies may be appended to it: cfg_listener_exposure). */
struct ctl_proxy {
    const struct listener_cfg *cfg;
    struct listener_cfg *own;
    struct listener_shared *sh;
    int dynamic;            /* added at run time: sh and wlisteners are ours */
    int enabled;
    char listen[300];       /* what GET shows: the bound address, or as asked */
};

struct api_ctl {
    struct rt rt;
    const struct ferry_cfg *gcfg;
    struct ctl_proxy **p;   /* listing order */
    size_t n, cap;
    /* Configured listeners deleted through the API: their wlisteners stay
     * (stopped) on the workers, so their configs must outlive the workers. */
    struct ctl_proxy **gone;
    size_t ngone, gone_cap;
};

static int push(struct ctl_proxy ***arr, size_t *n, size_t *cap, struct ctl_proxy *p)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        struct ctl_proxy **na = realloc(*arr, c * sizeof(struct ctl_proxy *));
        if (!na) return -1;
        *arr = na;
        *cap = c;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

static void proxy_free(struct ctl_proxy *p)
{
    if (!p) return;
    if (p->own) {
        /* Only run-time listeners own their client ACL (an empty one). */
        if (p->dynamic) acl_free(&p->own->client_acl);
        acl_free(&p->own->dest_acl);
        free(p->own);
    }
    if (p->dynamic && p->sh) {
        worker_shared_free(p->sh);
        free(p->sh);
    }
    free(p);
}

struct api_ctl *api_ctl_new(struct server_worker *ws, unsigned n, const struct ferry_cfg *cfg)
{
    struct api_ctl *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->rt.ws = ws;
    c->rt.n = n;
    c->gcfg = cfg;
    for (size_t i = 0; n && i < ws[0].nlisteners; i++) {
        struct ctl_proxy *p = calloc(1, sizeof(*p));
        if (!p || push(&c->p, &c->n, &c->cap, p) < 0) {
            free(p);
            api_ctl_free(c);
            return NULL;
        }
        p->cfg = ws[0].listeners[i].cfg;
        p->sh = ws[0].listeners[i].sh;
        p->enabled = 1;
        net_addr_format(&p->cfg->listen[0], p->listen, sizeof(p->listen));
    }
    return c;
}

void api_ctl_free(struct api_ctl *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) proxy_free(c->p[i]);
    for (size_t i = 0; i < c->ngone; i++) proxy_free(c->gone[i]);
    free(c->p);
    free(c->gone);
    free(c);
}

/* ---- parsing what the client sent ---- */

/* What -l takes (net_addr_parse: an IP literal, localhost or ":PORT"); port
 * 0 picks a free port. 0 or -1. */
static int parse_listen(const char *s, struct net_addr *a, char *err, size_t errlen)
{
    char e[200];
    if (net_addr_parse(s, a, e, sizeof(e)) == 0) return 0;
    snprintf(err, errlen, "bad request body: listen: %s", e);
    return -1;
}

static int parse_upstream(const char *s, struct host_port *hp, char *err, size_t errlen)
{
    char e[200];
    if (host_port_parse(s, hp, 0, e, sizeof(e)) == 0 && hp->host[0]) return 0;
    if (!hp->host[0]) snprintf(e, sizeof(e), "'%.100s': upstream needs a host", s);
    snprintf(err, errlen, "bad request body: upstream: %s", e);
    return -1;
}

/* ---- starting and stopping ---- */

/* The enabled listener other than p, or the API, that listens where a
 * would: 0, or -1 with "cannot listen on A: address in use by listener
 * 'NAME'" in err. Without it the bind check of sock_listen_group would
 * blame "another process". */
static int check_own_addr(const struct api_ctl *c, const struct ctl_proxy *p, const struct net_addr *a,
                          char *err, size_t errlen)
{
    char as[NET_ADDR_STRLEN], hs[NET_ADDR_STRLEN], owner[80] = "";
    const struct net_addr *had = NULL;
    struct net_addr bound;
    char e[200];
    if (c->gcfg->has_api && net_addr_overlap(&c->gcfg->api_addr, a)) {
        had = &c->gcfg->api_addr;
        snprintf(owner, sizeof(owner), "the API");
    }
    for (size_t i = 0; i < c->n && !had; i++) {
        const struct ctl_proxy *q = c->p[i];
        if (q == p || !q->enabled) continue;
        had = cfg_listen_clash(q->cfg, q->cfg->nlisten, a);
        /* Port 0 in the config: what was bound is only in the text. */
        if (!had && net_addr_parse(q->listen, &bound, e, sizeof(e)) == 0 && net_addr_overlap(&bound, a))
            had = &bound;
        if (had) snprintf(owner, sizeof(owner), "listener '%s'", q->cfg->name);
    }
    if (!had) return 0;
    net_addr_format(a, as, sizeof(as));
    net_addr_format(had, hs, sizeof(hs));
    if (net_addr_equal(a, had)) snprintf(err, errlen, "cannot listen on %s: address in use by %s", as, owner);
    else snprintf(err, errlen, "cannot listen on %s: address in use by %s (on %s)", as, owner, hs);
    return -1;
}

/* Binds every listen address and starts accepting; on failure nothing
 * listens. 0 or 500 with err. */
static int proxy_start(struct api_ctl *c, struct ctl_proxy *p, char *err, size_t errlen)
{
    int fds[256];
    struct net_addr bound;
    if (c->rt.n > sizeof(fds) / sizeof(fds[0])) {
        snprintf(err, errlen, "too many workers");
        return 500;
    }
    for (size_t j = 0; j < p->cfg->nlisten; j++) {
        if (check_own_addr(c, p, &p->cfg->listen[j], err, errlen) < 0 ||
            sock_listen_group(&p->cfg->listen[j], (int)p->cfg->backlog, c->rt.n, fds, &bound, err, errlen) < 0) {
            if (j) rt_stop(&c->rt, p->sh);
            return 500;
        }
        rt_start(&c->rt, p->sh, fds);
        if (j == 0) net_addr_format(&bound, p->listen, sizeof(p->listen));
    }
    p->enabled = 1;
    return 0;
}

static void proxy_stop(struct api_ctl *c, struct ctl_proxy *p)
{
    rt_stop(&c->rt, p->sh);
    p->enabled = 0;
}

/* ---- backend ops ---- */

static size_t op_count(void *ctx)
{
    return ((struct api_ctl *)ctx)->n;
}

static int op_get(void *ctx, size_t i, struct api_proxy *out)
{
    struct api_ctl *c = ctx;
    if (i >= c->n) return -1;
    struct ctl_proxy *p = c->p[i];
    const struct listener_cfg *lc = p->cfg;
    snprintf(out->name, sizeof(out->name), "%s", lc->name);
    snprintf(out->listen, sizeof(out->listen), "%s", p->listen);
    out->upstream[0] = '\0';
    if (lc->mode == MODE_RELAY && lc->nupstreams) {
        const struct host_port *hp = &lc->upstreams[0].hp;
        if (lc->upstreams[0].srv) snprintf(out->upstream, sizeof(out->upstream), "srv://%s", hp->host);
        else host_port_format(hp->host, hp->port, out->upstream, sizeof(out->upstream));
    }
    out->enabled = p->enabled;
    out->toxics = &p->sh->relay.toxics;
    return 0;
}

static long op_find(void *ctx, const char *name)
{
    struct api_ctl *c = ctx;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->p[i]->cfg->name, name) == 0) return (long)i;
    return -1;
}

/* A relay listener with ferry's defaults, like `ferry relay -l L -u U`. */
static int new_relay_cfg(const struct api_ctl *c, const char *name, const struct net_addr *listen,
                         const struct host_port *up, struct listener_cfg **out, char *err, size_t errlen)
{
    struct ferry_cfg scratch = *c->gcfg;   /* opt_defaults also writes globals: not into the live ones */
    struct listener_cfg *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->mode = MODE_RELAY;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->listen[0] = *listen;
    l->nlisten = 1;
    l->upstreams[0].hp = *up;
    l->upstreams[0].weight = 1;
    l->nupstreams = 1;
    if (opt_defaults(&scratch, l, err, errlen) < 0 || cfg_listener_finish(l, err, errlen) < 0) {
        acl_free(&l->client_acl);
        acl_free(&l->dest_acl);
        free(l);
        return -1;
    }
    *out = l;
    return 0;
}

static int op_create(void *ctx, const struct api_proxy_req *req, char *err, size_t errlen)
{
    struct api_ctl *c = ctx;
    struct net_addr la;
    struct host_port up;
    /* The config file's rule: the name is logged as listener=NAME on every
     * session line and is one segment of /proxies/NAME. */
    if (!cfg_name_ok(req->name)) {
        snprintf(err, errlen, "bad request body: name: use 1-%d letters, digits, '-', '_' or '.'", CFG_NAME_MAX);
        return 400;
    }
    if (parse_listen(req->listen && req->listen[0] ? req->listen : "127.0.0.1:0", &la, err, errlen) < 0 ||
        parse_upstream(req->upstream, &up, err, errlen) < 0)
        return 400;
    struct ctl_proxy *p = calloc(1, sizeof(*p));
    if (!p) goto oom;
    p->dynamic = 1;
    if (new_relay_cfg(c, req->name, &la, &up, &p->own, err, errlen) < 0) {
        free(p);
        return 400;
    }
    p->cfg = p->own;
    snprintf(p->listen, sizeof(p->listen), "%s", req->listen && req->listen[0] ? req->listen : "127.0.0.1:0");
    if (!(p->sh = calloc(1, sizeof(*p->sh)))) goto oom_p;
    if (worker_shared_init(p->sh, p->cfg, err, errlen) < 0) {
        free(p->sh);
        p->sh = NULL;
        proxy_free(p);
        return 500;
    }
    if (rt_attach(&c->rt, p->cfg, p->sh, err, errlen) < 0) {
        proxy_free(p);
        return 500;
    }
    int st = req->enabled != 0 ? proxy_start(c, p, err, errlen) : 0;
    if (st || push(&c->p, &c->n, &c->cap, p) < 0) {
        rt_detach(&c->rt, p->sh);
        proxy_free(p);
        if (!st) snprintf(err, errlen, "out of memory");
        return st ? st : 500;
    }
    return 0;
oom_p:
    proxy_free(p);
oom:
    snprintf(err, errlen, "out of memory");
    return 500;
}

static void copy_free(struct listener_cfg *copy)
{
    acl_free(&copy->dest_acl);
    free(copy);
}

/* The proxy's config with a new listen address or upstream (NULL: kept),
 * checked as the command line and config file check a listener where it
 * listens. 0, 400 (refused, with the reason) or 500, with err. */
static int copy_cfg(const struct ctl_proxy *p, const struct net_addr *la, const struct host_port *up,
                    struct listener_cfg **out, char *err, size_t errlen)
{
    struct listener_cfg *copy = malloc(sizeof(*copy));
    if (!copy) goto oom;
    *copy = *p->cfg;
    if (acl_copy(&copy->dest_acl, &p->cfg->dest_acl) < 0) {
        free(copy);
        goto oom;
    }
    if (la) {
        copy->listen[0] = *la;
        copy->nlisten = 1;
    }
    if (up) {
        copy->upstreams[0].hp = *up;
        copy->upstreams[0].weight = 1;
        copy->upstreams[0].backup = 0;
        copy->upstreams[0].maxconn = 0;
        copy->nupstreams = 1;
        copy->group = NULL;
    }
    if (cfg_listener_exposure(copy, err, errlen) < 0) {
        copy_free(copy);
        return 400;
    }
    *out = copy;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return 500;
}

/* Listen address or upstream changed: stop, point the workers at a new
 * copy of the config, then start again if enabled. A refused change
 * leaves the listener as it was, running or not. */
static int retarget(struct api_ctl *c, struct ctl_proxy *p, const struct net_addr *la,
                    const struct host_port *up, const char *listen_text, char *err, size_t errlen)
{
    struct listener_cfg *copy;
    int st = copy_cfg(p, la, up, &copy, err, errlen);
    if (st) return st;
    if (p->enabled) proxy_stop(c, p);
    if (rt_retarget(&c->rt, p->sh, copy, err, errlen) < 0) {
        copy_free(copy);
        return 500;
    }
    if (p->own) copy_free(p->own);     /* no worker reads it any more */
    p->own = copy;
    p->cfg = copy;
    if (la) snprintf(p->listen, sizeof(p->listen), "%s", listen_text);
    return 0;
}

static int op_update(void *ctx, size_t i, const struct api_proxy_req *req, char *err, size_t errlen)
{
    struct api_ctl *c = ctx;
    struct ctl_proxy *p = c->p[i];
    const struct listener_cfg *lc = p->cfg;
    struct net_addr la;
    struct host_port up;
    int new_listen = 0, new_up = 0;
    int enable = req->enabled < 0 ? p->enabled : req->enabled;
    if (req->listen && req->listen[0]) {
        if (parse_listen(req->listen, &la, err, errlen) < 0) return 400;
        /* Port 0 asks for a new port, as toxiproxy would bind it again. */
        new_listen = lc->nlisten != 1 || !net_addr_equal(&la, &lc->listen[0]) || net_addr_port(&la) == 0;
    }
    if (req->upstream && req->upstream[0]) {
        if (parse_upstream(req->upstream, &up, err, errlen) < 0) return 400;
        new_up = lc->nupstreams != 1 || strcmp(up.host, lc->upstreams[0].hp.host) != 0 ||
                 up.port != lc->upstreams[0].hp.port;
        if (new_up && lc->mode != MODE_RELAY) {
            snprintf(err, errlen, "bad request body: upstream: listener %s is not a relay", lc->name);
            return 400;
        }
        if (new_up && cfg_effective_health(lc)->interval_ms) {
            snprintf(err, errlen, "bad request body: upstream: listener %s has health checks; "
                     "change its servers in the config file", lc->name);
            return 400;
        }
    }
    /* Refused before anything changes: the listener stays as it was. */
    if (new_listen && enable && check_own_addr(c, p, &la, err, errlen) < 0) return 500;
    if (new_listen || new_up) {
        int st = retarget(c, p, new_listen ? &la : NULL, new_up ? &up : NULL, req->listen, err, errlen);
        if (st) return st;
    }
    if (enable && !p->enabled) return proxy_start(c, p, err, errlen);
    if (!enable && p->enabled) proxy_stop(c, p);
    return 0;
}

static int op_remove(void *ctx, size_t i, char *err, size_t errlen)
{
    struct api_ctl *c = ctx;
    struct ctl_proxy *p = c->p[i];
    if (p->dynamic) {
        rt_detach(&c->rt, p->sh);
        proxy_free(p);
    } else {
        proxy_stop(c, p);
        if (push(&c->gone, &c->ngone, &c->gone_cap, p) < 0) {
            /* Cannot remember it: leave it listed, stopped. */
            snprintf(err, errlen, "out of memory");
            return 500;
        }
    }
    memmove(&c->p[i], &c->p[i + 1], (c->n - i - 1) * sizeof(struct ctl_proxy *));
    c->n--;
    return 0;
}

static void op_toxics_changed(void *ctx, size_t i)
{
    struct api_ctl *c = ctx;
    rt_refresh_toxics(&c->rt, c->p[i]->sh);
}

void api_ctl_backend(struct api_ctl *c, struct api_backend *b)
{
    b->ctx = c;
    b->version = FERRY_VERSION;
    b->count = op_count;
    b->get = op_get;
    b->find = op_find;
    b->create = op_create;
    b->update = op_update;
    b->remove = op_remove;
    b->toxics_changed = op_toxics_changed;
}
