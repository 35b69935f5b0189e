/* rlistener.c - see rlistener.h and handler.h: the listener handlers. */
#include "relay/rlistener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/loop.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "relay/connect.h"
#include "relay/mux_local.h"
#include "relay/mux_server.h"
#include "relay/sess_filters.h"
#include "relay/sess_toxics.h"
#include "relay/session.h"
#include "relay/ss_pool.h"
#include "relay/ss_udp_server.h"
#include "resolver/resolver.h"
#include "upstream/discover.h"

/* A worker's copy of a discovered group's slots (upstream/disc.h). */
struct rl_disc {
    unsigned seen;                   /* disc_shared generation copied */
    uint32_t ver[DISC_MAX];          /* slot versions applied to lb_servers */
    struct host_port hp[DISC_MAX];
    struct disc_set set;
};

struct resolver *rlistener_resolver(struct relay_listener *rl)
{
    if (rl->resolver) return rl->resolver;
    char err[256];
    struct resolver_opts o = {
        .servers = rl->cfg->dns_servers[0] ? rl->cfg->dns_servers : NULL,
        .timeout_ms = rl->cfg->resolve_timeout_ms,
        .cache_entries = 1024,
        .max_inflight = rl->cfg->resolve_max_inflight,
    };
    rl->resolver = resolver_new(rl->w->loop, &o, err, sizeof(err));
    if (!rl->resolver) log_error("listener=%s resolver: %s", rl->cfg->name, err);
    return rl->resolver;
}

/* A slot that got a new server starts afresh in this worker's balancer
 * (sessions still on the old one release into it: see disc.h); a kept one
 * keeps its health and counts and takes the new weight or role. */
static void apply_slot(struct relay_listener *rl, size_t i, const struct disc_slot *d)
{
    struct lb_server *s = &rl->lb_servers[i];
    if (d->state != DISC_EMPTY && rl->disc->ver[i] != d->ver) {
        char name[300];
        rl->disc->ver[i] = d->ver;
        snprintf(rl->disc->hp[i].host, sizeof(rl->disc->hp[i].host), "%s", d->s.host);
        rl->disc->hp[i].port = d->s.port;
        disc_server_name(&d->s, name, sizeof(name));
        s->key = lb_key(name);
        s->current = 0;
        (void)lb_set_up(&rl->lb, (int)i, 1);
    }
    s->weight = d->s.weight > 0 ? d->s.weight : 1;
    s->backup = d->s.backup;
    s->maxconn = d->s.maxconn;
    s->off = d->state != DISC_ACTIVE;
}

void rlistener_sync_servers(struct relay_listener *rl)
{
    if (!rl->disc || !disc_shared_sync(rl->sh->disc, &rl->disc->seen, &rl->disc->set)) return;
    for (size_t i = 0; i < rl->disc->set.n; i++) apply_slot(rl, i, &rl->disc->set.slot[i]);
}

const struct host_port *rlistener_server(const struct relay_listener *rl, int idx)
{
    return rl->disc ? &rl->disc->hp[idx] : &rl->cfg->upstreams[idx].hp;
}

void rlistener_session_closed(struct relay_listener *rl, const struct net_addr *client, int counted_ip)
{
    rl->closed(rl->owner, client, counted_ip);
}

/* ---- shared state ---- */

/* The scrape's view of a relay listener's servers (API thread). */
static size_t servers_count(void *ctx)
{
    const struct relay_shared *sh = ctx;
    return sh->cfg->nupstreams;
}

static void server_name(void *ctx, size_t i, char *out, size_t outlen)
{
    const struct relay_shared *sh = ctx;
    const struct host_port *hp = &sh->cfg->upstreams[i].hp;
    snprintf(out, outlen, strchr(hp->host, ':') ? "[%s]:%u" : "%s:%u", hp->host, hp->port);
}

/* Without checks a server counts as up (passive ejection is per worker). */
static int server_up(void *ctx, size_t i)
{
    const struct relay_shared *sh = ctx;
    return __atomic_load_n(&sh->checks_on, __ATOMIC_ACQUIRE) ? health_is_up(&sh->health[i]) : 1;
}

static uint64_t server_transitions(void *ctx, size_t i)
{
    const struct relay_shared *sh = ctx;
    return health_transitions(&sh->health[i]);
}

static const struct metrics_server_ops server_ops = {
    servers_count, server_name, server_up, server_transitions,
};

/* The same for a discovered group: its slots; an EMPTY one has no name
 * (the scrape skips it), a DRAINING one is down. */
static size_t disc_servers_count(void *ctx)
{
    struct relay_shared *sh = ctx;
    return disc_shared_count(sh->disc);
}

static void disc_server_name_cb(void *ctx, size_t i, char *out, size_t outlen)
{
    struct relay_shared *sh = ctx;
    (void)disc_shared_slot(sh->disc, i, out, outlen);
}

static int disc_server_up(void *ctx, size_t i)
{
    struct relay_shared *sh = ctx;
    char name[300];
    return disc_shared_slot(sh->disc, i, name, sizeof(name)) && server_up(ctx, i);
}

static const struct metrics_server_ops disc_server_ops = {
    disc_servers_count, disc_server_name_cb, disc_server_up, server_transitions,
};

static int shared_init(struct relay_shared *sh, const struct listener_cfg *lc, char *err, size_t errlen)
{
    toxic_slot_init(&sh->toxics);
    sh->cfg = lc;
    sh->metrics = metrics_listener_new(lc->name);
    if (cfg_discovered(lc)) {
        if (!(sh->disc = malloc(sizeof(*sh->disc)))) {
            snprintf(err, errlen, "out of memory");
            metrics_listener_free(sh->metrics);
            sh->metrics = NULL;
            return -1;
        }
        disc_shared_init(sh->disc);
    }
    if (cfg_balanced(lc)) metrics_listener_servers(sh->metrics, sh->disc ? &disc_server_ops : &server_ops, sh);
    if (!lc->ntoxics) return 0;
    struct toxic_set *set = toxic_set_new(lc->toxics, lc->ntoxics);
    if (!set) {
        snprintf(err, errlen, "out of memory");
        toxic_slot_destroy(&sh->toxics);
        metrics_listener_free(sh->metrics);
        sh->metrics = NULL;
        if (sh->disc) disc_shared_destroy(sh->disc);
        free(sh->disc);
        sh->disc = NULL;
        return -1;
    }
    toxic_slot_publish(&sh->toxics, set);
    return 0;
}

static void shared_free(struct relay_shared *sh)
{
    toxic_slot_destroy(&sh->toxics);
    metrics_listener_free(sh->metrics);
    sh->metrics = NULL;
    if (sh->disc) disc_shared_destroy(sh->disc);
    free(sh->disc);
    sh->disc = NULL;
}

/* ---- the balancer (relay mode) ---- */

/* Per-worker balancer state over the listener's servers. With active checks
 * on, connect failures also count (passive ejection), since checks are what
 * bring a server back. */
static int rebalance(struct relay_listener *rl, char *err, size_t errlen)
{
    const struct listener_cfg *lc = rl->cfg;
    const struct health_cfg *hc = cfg_effective_health(lc);
    size_t n = lc->nupstreams;
    if (rl->disc) {       /* every slot, off until the discoverer fills it */
        n = DISC_MAX;
        for (size_t i = 0; i < DISC_MAX; i++) rl->lb_servers[i] = (struct lb_server){ .weight = 1, .off = 1 };
    }
    for (size_t i = 0; i < lc->nupstreams && !rl->disc; i++) {
        char name[300];
        const struct upstream_cfg *u = &lc->upstreams[i];
        struct lb_server *s = &rl->lb_servers[i];
        s->weight = u->weight;
        s->backup = (uint8_t)u->backup;
        s->maxconn = u->maxconn;
        snprintf(name, sizeof(name), "%s:%u", u->hp.host, u->hp.port);
        s->key = lb_key(name);
    }
    if (lb_group_init(&rl->lb, rl->lb_servers, n, cfg_balance_names[cfg_effective_balance(lc)],
                      err, errlen) < 0)
        return -1;
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) seed = clock_now_ms() ^ (uint64_t)rl->w->id;
    lb_group_seed(&rl->lb, seed);
    rl->lb.rise = hc->rise ? hc->rise : 2;
    rl->lb.fall = hc->fall ? hc->fall : 3;
    rl->lb.passive = hc->interval_ms != 0;
    return 0;
}

/* The listener is stopped, so no session holds a server slot: the balancer
 * is built again from the new server list. Nothing else of the listener
 * depends on the config's addresses. */
static int retarget_relay(struct relay_listener *rl, const struct listener_cfg *lc, char *err, size_t errlen)
{
    const struct listener_cfg *old = rl->cfg;
    char ignored[256];
    if (rl->disc || cfg_discovered(lc)) {
        snprintf(err, errlen, "%s: servers found through DNS cannot be changed at run time", lc->name);
        return -1;
    }
    rl->cfg = lc;
    if (rebalance(rl, err, errlen) == 0) return 0;
    rl->cfg = old;
    (void)rebalance(rl, ignored, sizeof(ignored));
    return -1;
}

/* No balancer: nothing can fail (the table's signature is the relay's). */
static int retarget_plain(struct relay_listener *rl, const struct listener_cfg *lc, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    rl->cfg = lc;
    return 0;
}

/* The discoverer tells the health checker (same thread) where a slot's
 * server went; a draining slot is no longer checked. */
static void disc_changed(void *arg, size_t i, const struct disc_slot *s)
{
    struct relay_listener *rl = arg;
    struct host_port hp = { .port = s->s.port };
    if (!rl->hc) return;
    snprintf(hp.host, sizeof(hp.host), "%s", s->s.host);
    health_set_server(rl->hc, i, s->state == DISC_ACTIVE ? &hp : NULL);
}

/* Worker 0 looks the group's names up, with a resolver of its own (no
 * cache: each refresh asks DNS), for every worker. */
static int start_discovery(struct relay_listener *rl, char *err, size_t errlen)
{
    const struct listener_cfg *lc = rl->cfg;
    struct discover_spec specs[CFG_MAX_UPSTREAMS];
    if (!rl->disc || rl->w->id != 0) return 0;
    struct resolver_opts ro = {
        .servers = lc->dns_servers[0] ? lc->dns_servers : NULL,
        .timeout_ms = lc->resolve_timeout_ms,
        .max_inflight = 4 * DISC_MAX,
    };
    if (!(rl->disc_resolver = resolver_new(rl->w->loop, &ro, err, errlen))) return -1;
    for (size_t i = 0; i < lc->nupstreams; i++) {
        const struct upstream_cfg *u = &lc->upstreams[i];
        specs[i] = (struct discover_spec){
            .kind = u->srv ? DISCOVER_SRV : u->resolve_all ? DISCOVER_ALL : DISCOVER_STATIC,
            .host = u->hp.host, .port = u->hp.port, .weight = u->weight, .backup = (int)u->backup,
            .maxconn = u->maxconn,
        };
    }
    struct discover_opts o = {
        .refresh_min_ms = lc->dns_refresh_min_ms, .refresh_max_ms = lc->dns_refresh_max_ms,
        .prefer_ipv6 = lc->prefer_ipv6,
    };
    rl->discoverer = discover_start(rl->w->loop, rl->disc_resolver, lc->group ? lc->group->name : lc->name, specs,
                                    lc->nupstreams, rl->sh->disc, &o, disc_changed, rl, err, errlen);
    return rl->discoverer ? 0 : -1;
}

/* One checker per listener, on worker 0; results reach every worker
 * through the shared array (health_sync before each pick). */
static int start_relay(struct relay_listener *rl, char *err, size_t errlen)
{
    const struct listener_cfg *lc = rl->cfg;
    const struct health_cfg *hc = cfg_effective_health(lc);
    struct host_port hp[CFG_MAX_UPSTREAMS];
    struct resolver *r;
    if (hc->interval_ms == 0) return start_discovery(rl, err, errlen);
    __atomic_store_n(&rl->sh->checks_on, 1, __ATOMIC_RELEASE);   /* the scrape reads it */
    if (rl->w->id != 0) return 0;
    if (!(r = rlistener_resolver(rl))) {
        snprintf(err, errlen, "listener %s: cannot create a resolver for health checks", lc->name);
        return -1;
    }
    for (size_t i = 0; i < lc->nupstreams; i++) hp[i] = lc->upstreams[i].hp;
    struct health_opts o = {
        .interval_ms = hc->interval_ms, .timeout_ms = hc->timeout_ms, .rise = hc->rise, .fall = hc->fall,
        .send = hc->send[0] ? hc->send : NULL, .send_len = strlen(hc->send),
        .expect = hc->expect[0] ? hc->expect : NULL, .prefer_ipv6 = lc->prefer_ipv6,
    };
    o.slots = rl->disc != NULL;
    if (rl->disc) memset(hp, 0, sizeof(hp));         /* parked until discovered */
    rl->hc = health_start(rl->w->loop, r, lc->group ? lc->group->name : lc->name, hp,
                          rl->disc ? DISC_MAX : lc->nupstreams, rl->sh->health, &o, err, errlen);
    return rl->hc ? start_discovery(rl, err, errlen) : -1;
}

/* No health checks to start. */
static int start_plain(struct relay_listener *rl, char *err, size_t errlen)
{
    (void)rl;
    (void)err;
    (void)errlen;
    return 0;
}

/* ---- attach, detach ---- */

static void rl_free(void *p)
{
    struct relay_listener *rl = p;
    free(rl->disc);
    free(rl);
}

static void detach(struct relay_listener *rl)
{
    ss_udp_server_stop(rl->ss_udp);  /* before the resolver it may be using */
    rl->ss_udp = NULL;
    mux_server_close_all(rl);
    mux_pool_free(rl->mux_pool);  /* before the resolver it may be using */
    rl->mux_pool = NULL;
    discover_stop(rl->discoverer);   /* before its resolver goes */
    if (rl->disc_resolver) resolver_free(rl->disc_resolver);
    health_stop(rl->hc);          /* before its resolver goes */
    ss_pool_free(rl->pool);
    sess_filters_listener_stop(rl);
    sess_toxics_listener_stop(rl);
    loop_timer_cancel(rl->w->loop, &rl->queue_timer);
    if (rl->resolver) resolver_free(rl->resolver);
    /* Sessions closed in this batch are freed after it, and point here. */
    loop_defer_free(rl->w->loop, rl, rl_free);
}

static struct relay_listener *attach(struct worker *w, const struct listener_cfg *lc, struct relay_shared *sh,
                                     rlistener_admit_fn *admit, rlistener_closed_fn *closed, void *owner,
                                     char *err, size_t errlen)
{
    struct relay_listener *rl = calloc(1, sizeof(*rl));
    if (!rl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rl->w = w;
    rl->cfg = lc;
    rl->sh = sh;
    rl->admit = admit;
    rl->closed = closed;
    rl->owner = owner;
    loop_timer_init(&rl->queue_timer, connect_queue_run, rl);
    if (sh->disc && !(rl->disc = calloc(1, sizeof(*rl->disc)))) {
        snprintf(err, errlen, "out of memory");
        free(rl);
        return NULL;
    }
    if (cfg_balanced(lc) && rebalance(rl, err, errlen) < 0) {
        rl_free(rl);
        return NULL;
    }
    if (lc->mode == MODE_MUX_LOCAL && !(rl->mux_pool = mux_pool_new(rl))) {
        snprintf(err, errlen, "out of memory");
        rl_free(rl);
        return NULL;
    }
    rl->pool = ss_pool_new(rl);
    if (sess_filters_listener_start(rl, err, errlen) < 0) {
        ss_pool_free(rl->pool);
        mux_pool_free(rl->mux_pool);
        rl_free(rl);
        return NULL;
    }
    return rl;
}

/* ---- sessions ---- */

static int accept_session(struct relay_listener *rl, int fd, const struct net_addr *peer, int counted_ip)
{
    return sess_accept(rl, fd, peer, counted_ip);
}

static void close_sessions(struct relay_listener *rl, enum rlistener_close why)
{
    struct session *s = rl->w->sessions, *next;
    for (; s; s = next) {
        next = s->next;   /* sess_close unlinks s, and only s */
        if (s->wl == rl) sess_close(s, why == RLISTENER_CLOSE_API ? END_API : END_DRAIN);
    }
    /* Closing released server slots, which may have armed the queue run. */
    loop_timer_cancel(rl->w->loop, &rl->queue_timer);
}

static void refresh_toxics(struct relay_listener *rl)
{
    struct session *s = rl->w->sessions, *next;
    for (; s; s = next) {
        next = s->next;   /* a refresh may close s (out of memory) */
        if (s->wl == rl) sess_toxics_refresh(s);
    }
}

/* Every mode accepts the same way: the session picks its front-end from
 * the config (SOCKS, Shadowsocks, none). Relay listeners add a balancer
 * and health checks. */
static const struct listener_handler plain_handler = {
    .shared_init = shared_init, .shared_free = shared_free,
    .attach = attach, .start = start_plain, .accept = accept_session, .retarget = retarget_plain,
    .close_sessions = close_sessions, .refresh_toxics = refresh_toxics, .detach = detach,
};

/* ---- multiplexers ---- */

static int start_mux_server(struct relay_listener *rl, char *err, size_t errlen)
{
    return cfg_balanced(rl->cfg) ? start_relay(rl, err, errlen) : 0;
}

static int retarget_mux_server(struct relay_listener *rl, const struct listener_cfg *lc, char *err, size_t errlen)
{
    return cfg_balanced(lc) ? retarget_relay(rl, lc, err, errlen) : retarget_plain(rl, lc, err, errlen);
}

/* Drain and the API close the connections too: their streams are sessions. */
static void close_mux_server(struct relay_listener *rl, enum rlistener_close why)
{
    close_sessions(rl, why);
    mux_server_close_all(rl);
}

static int start_mux_local(struct relay_listener *rl, char *err, size_t errlen)
{
    return mux_pool_start(rl->mux_pool, err, errlen);
}

static void drain_mux_local(struct relay_listener *rl) { mux_pool_drain(rl->mux_pool); }

static const struct listener_handler mux_server_handler = {
    .shared_init = shared_init, .shared_free = shared_free,
    .attach = attach, .start = start_mux_server, .accept = mux_server_accept, .retarget = retarget_mux_server,
    .close_sessions = close_mux_server, .refresh_toxics = refresh_toxics, .drain = mux_server_drain,
    .detach = detach,
};

static const struct listener_handler mux_local_handler = {
    .shared_init = shared_init, .shared_free = shared_free,
    .attach = attach, .start = start_mux_local, .accept = accept_session, .retarget = retarget_plain,
    .close_sessions = close_sessions, .refresh_toxics = refresh_toxics, .drain = drain_mux_local,
    .detach = detach,
};

/* ---- ss-server -u ---- */

static int shared_init_ss(struct relay_shared *sh, const struct listener_cfg *lc, char *err, size_t errlen)
{
    sh->nudp = 0;
    if (lc->udp) {
        int n = ss_udp_bind(lc, sh->udp_fds, err, errlen);
        if (n < 0) return -1;
        sh->nudp = (size_t)n;
    }
    if (shared_init(sh, lc, err, errlen) < 0) {
        ss_udp_unbind(sh->udp_fds, sh->nudp);
        sh->nudp = 0;
        return -1;
    }
    return 0;
}

static void shared_free_ss(struct relay_shared *sh)
{
    ss_udp_unbind(sh->udp_fds, sh->nudp);
    sh->nudp = 0;
    shared_free(sh);
}

/* A retiring listener (reload) or the process draining: its UDP clients
 * end now, and its successor, if any, reads the same socket. */
static void drain_ss_server(struct relay_listener *rl) { ss_udp_server_drain(rl->ss_udp); }

/* One thread reads the UDP sockets, so that each client meets one NAT
 * entry. */
static int start_ss_server(struct relay_listener *rl, char *err, size_t errlen)
{
    if (rl->w->id != 0 || !rl->sh->nudp) return 0;
    rl->ss_udp = ss_udp_server_start(rl, rl->sh->udp_fds, rl->sh->nudp, err, errlen);
    return rl->ss_udp ? 0 : -1;
}

static const struct listener_handler ss_server_handler = {
    .shared_init = shared_init_ss, .shared_free = shared_free_ss,
    .attach = attach, .start = start_ss_server, .accept = accept_session, .retarget = retarget_plain,
    .close_sessions = close_sessions, .refresh_toxics = refresh_toxics, .drain = drain_ss_server,
    .detach = detach,
};

static const struct listener_handler relay_mode_handler = {
    .shared_init = shared_init, .shared_free = shared_free,
    .attach = attach, .start = start_relay, .accept = accept_session, .retarget = retarget_relay,
    .close_sessions = close_sessions, .refresh_toxics = refresh_toxics, .detach = detach,
};

const struct listener_handler *relay_handler(enum ferry_mode mode)
{
    switch (mode) {
    case MODE_SOCKS:
    case MODE_SS_LOCAL: return &plain_handler;
    case MODE_SS_SERVER: return &ss_server_handler;
    case MODE_RELAY: return &relay_mode_handler;
    case MODE_MUX_SERVER: return &mux_server_handler;
    case MODE_MUX_LOCAL: return &mux_local_handler;
    }
    return NULL;
}
