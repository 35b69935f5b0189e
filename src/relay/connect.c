/* connect.c - see connect.h. */
#include "relay/connect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/sock.h"
#include "obs/log.h"
#include "policy/acl.h"
#include "relay/bind.h"
#include "relay/mux_local.h"
#include "relay/rlistener.h"
#include "relay/session.h"
#include "relay/ss_pool.h"
#include "relay/sess_metrics.h"
#include "relay/via.h"
#include "resolver/resolver.h"
#include "upstream/health.h"

static void connect_next(struct session *s);

/* ss-local --pool: an already connected socket skips the TCP handshake.
 * It goes through CONNECTING like a fresh one (it is writable at once),
 * so the rest of the path is the same. */
static int use_pooled(struct session *s)
{
    struct net_addr peer;
    int fd = ss_pool_take(s->wl->pool, &peer);
    if (fd < 0) return 0;
    if (sess_upstream_register(s, fd) < 0) {
        close(fd);
        return 0;
    }
    s->upstream = peer;
    s->state = SESS_CONNECTING;
    loop_timer_arm_in(s->wl->w->loop, &s->timer, s->wl->cfg->connect_timeout_ms);
    sess_kick(s);
    return 1;
}

static const struct listener_cfg *cfg_of(const struct session *s) { return s->wl->cfg; }

static void fail_from_errno(int err, enum sess_fail *why, enum sess_end *end)
{
    *end = END_CONNECT_ERROR;
    switch (err) {
    case ECONNREFUSED: *why = FAIL_REFUSED; *end = END_CONNECT_REFUSED; break;
    case ENETUNREACH: *why = FAIL_NET_UNREACH; break;
    case EHOSTUNREACH: *why = FAIL_HOST_UNREACH; break;
    case ETIMEDOUT: *why = FAIL_TIMEOUT; *end = END_CONNECT_TIMEOUT; break;
    case EACCES: *why = FAIL_NOT_ALLOWED; *end = END_DENIED; break;
    case EMFILE: case ENFILE: case ENOMEM: case ENOBUFS:
        *why = FAIL_GENERAL; *end = END_LOCAL_ERROR; break;
    default: *why = FAIL_GENERAL; break;
    }
}

/* ---- wait queue: clients waiting while every server is at its maxconn ---- */

void connect_queue_remove(struct session *s)
{
    struct relay_listener *wl = s->wl;
    if (s->qprev) s->qprev->qnext = s->qnext;
    else if (wl->qhead == s) wl->qhead = s->qnext;
    else return;                                   /* not queued */
    if (s->qnext) s->qnext->qprev = s->qprev;
    else wl->qtail = s->qprev;
    s->qprev = s->qnext = NULL;
    wl->qlen--;
}

int connect_queue_push(struct session *s)
{
    struct relay_listener *wl = s->wl;
    if (wl->qlen >= wl->cfg->queue_size) return -1;
    s->qprev = wl->qtail;
    s->qnext = NULL;
    if (wl->qtail) wl->qtail->qnext = s;
    else wl->qhead = s;
    wl->qtail = s;
    wl->qlen++;
    return 0;
}

/* 0 queued, -1 queue full. */
static int queue_add(struct session *s)
{
    struct relay_listener *wl = s->wl;
    if (connect_queue_push(s) < 0) return -1;
    s->state = SESS_QUEUED;
    loop_timer_arm_in(wl->w->loop, &s->timer, wl->cfg->queue_timeout_ms);
    return 0;
}

/* An upstream host may come from the API (a client of its own): sanitised
 * like every other name that reaches the log. */
static void log_ejected(const struct relay_listener *wl, int idx)
{
    char host[256];
    if (!log_enabled(LOG_WARN)) return;
    log_sanitize(host, sizeof(host), rlistener_server(wl, idx)->host);
    log_warn("upstream %s/%s:%u ejected by worker %d after %u failed connects in a row (until a check passes)",
             wl->cfg->group ? wl->cfg->group->name : wl->cfg->name, host, rlistener_server(wl, idx)->port,
             wl->w->id, wl->lb.fall);
}

static void release_server(struct session *s, int failed)
{
    struct relay_listener *wl = s->wl;
    if (s->lb_idx < 0) return;
    sess_metrics_server_released(s, s->lb_idx, failed, s->lb_connected);
    if (lb_release(&wl->lb, s->lb_idx, failed) == 1) log_ejected(wl, s->lb_idx);
    s->lb_idx = -1;
    s->lb_connected = 0;
    /* A slot freed: let waiting clients try, after this callback (no
     * re-entry into connect code from inside a close). */
    if (wl->qhead) loop_timer_arm_in(wl->w->loop, &wl->queue_timer, 0);
}

static void drop_targets(struct session *s)
{
    free(s->targets);
    s->targets = NULL;
    s->target_idx = 0;
}

void connect_cleanup(struct session *s)
{
    connect_queue_remove(s);
    if (s->rq) resolver_cancel(s->rq);
    s->rq = NULL;
    drop_targets(s);
    free(s->target);
    s->target = NULL;
    free(s->dest);
    s->dest = NULL;
    release_server(s, 0);
    via_free(s);
}

/* Every address failed: try another upstream server (relay) or give up. */
static void give_up(struct session *s)
{
    enum sess_fail why;
    enum sess_end end;
    fail_from_errno(s->last_errno, &why, &end);
    if (s->unresolved) end = END_RESOLVE_FAILED;
    drop_targets(s);
    if (s->lb_idx >= 0) {
        release_server(s, 1);
        if (s->lb_attempts <= cfg_of(s)->retries && s->lb_attempts < s->wl->lb.n) {
            connect_start(s);
            return;
        }
    }
    sess_connect_failed(s, why, end);
}

/* The name is the client's (SOCKS5, SOCKS4a, Shadowsocks): the parsers
 * refuse only NUL, so a raw "\n" in it would forge log lines. */
static void log_resolve_failed(const struct session *s, int status)
{
    char host[256];
    if (!log_enabled(LOG_DEBUG)) return;
    log_sanitize(host, sizeof(host), s->target->host);
    log_debug("sess=%llu resolve %s failed: %s", (unsigned long long)s->id, host, resolver_strerror(status));
}

/* A refused lookup is our own limit, not the upstream's fault: no retry,
 * no passive failure. Logged at 1, 2, 4, 8... refusals, so a flood shows
 * its size in the log without filling it. */
static void resolve_refused(struct session *s)
{
    struct resolver_stats st;
    resolver_get_stats(rlistener_resolver(s->wl), &st);
    if ((st.refused & (st.refused - 1)) == 0)
        log_warn("listener=%s worker=%d DNS lookups refused: %llu so far (%zu in flight, %zu abandoned; "
                 "--resolve-max-inflight %u)", cfg_of(s)->name, s->wl->w->id, (unsigned long long)st.refused,
                 st.inflight, st.detached, cfg_of(s)->resolve_max_inflight);
    sess_connect_failed(s, FAIL_HOST_UNREACH, END_RESOLVE_LIMIT);
}

static void resolved_cb(void *arg, int status, const struct resolved *res)
{
    struct session *s = arg;
    s->rq = NULL;
    if (status == RESOLVER_BUSY) {
        resolve_refused(s);
        return;
    }
    if (status != RESOLVER_OK || res->n == 0) {
        log_resolve_failed(s, status);
        if (s->lb_idx >= 0) {
            s->last_errno = EHOSTUNREACH;
            s->unresolved = 1;
            give_up(s);
            return;
        }
        sess_connect_failed(s, FAIL_HOST_UNREACH, END_RESOLVE_FAILED);
        return;
    }
    if (!(s->targets = malloc(sizeof(*s->targets)))) {
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    *s->targets = *res;
    s->target_idx = 0;
    connect_next(s);
}

static int choose_server(struct session *s)
{
    struct relay_listener *wl = s->wl;
    size_t iplen;
    const uint8_t *ip = net_addr_ip(&s->client, &iplen);
    rlistener_sync_servers(wl);
    if (wl->sh->checks_on) health_sync(wl->sh->health, wl->hc_seen, &wl->lb);
    return lb_choose(&wl->lb, s->lb_tried, ip, iplen);
}

/* Takes server idx (already counted active by the balancer); fills s->target. */
static int use_server(struct session *s, int idx)
{
    const struct host_port *hp = rlistener_server(s->wl, idx);
    s->lb_idx = (int8_t)idx;
    s->lb_tried |= 1ULL << idx;
    s->lb_start_us = clock_now_us();
    /* The log names the last server tried, not an address of an earlier one. */
    s->unresolved = 0;
    memset(&s->upstream, 0, sizeof(s->upstream));
    s->lb_attempts++;
    return sess_set_target(s, hp->host, hp->port, 0);
}

static void connect_with(struct session *s);

void connect_start(struct session *s)
{
    if (s->bind) {
        bind_start(s);              /* a connection comes to us */
        return;
    }
    if (cfg_of(s)->mode == MODE_MUX_LOCAL) {
        mux_local_connect(s);       /* a stream, not a socket */
        return;
    }
    if (cfg_balanced(cfg_of(s))) {
        int idx = choose_server(s);
        if (idx == LB_FULL) {
            if (queue_add(s) == 0) {
                sess_kick(s);      /* watch the client while it waits */
                return;
            }
            sess_close(s, END_LIMIT);              /* queue full: refuse at once */
            return;
        }
        if (idx < 0 || use_server(s, idx) < 0) {
            sess_connect_failed(s, FAIL_GENERAL, idx < 0 ? END_CONNECT_ERROR : END_LOCAL_ERROR);
            return;
        }
    }
    connect_with(s);
}

/* Runs after a server slot freed: start waiting clients in order while
 * slots are free. */
void connect_queue_run(struct loop *l, struct loop_timer *t)
{
    struct relay_listener *wl = t->owner;
    (void)l;
    while (wl->qhead) {
        struct session *s = wl->qhead;
        int idx = choose_server(s);
        if (idx == LB_FULL) return;
        connect_queue_remove(s);
        if (idx < 0 || use_server(s, idx) < 0) {
            sess_connect_failed(s, FAIL_GENERAL, idx < 0 ? END_CONNECT_ERROR : END_LOCAL_ERROR);
            continue;
        }
        connect_with(s);
    }
}

/* Name rules are judged before the name is resolved: a denied name never
 * reaches a resolver (nor the DNS servers it asks). An address rule ahead
 * of any matching name rule leaves the verdict to dest_allowed(), once per
 * resolved address. */
static int name_denied(const struct session *s)
{
    if (!s->target->check_policy) return 0;
    return acl_check_dest_name(&cfg_of(s)->dest_acl, s->target->host, s->target->port) == ACL_DENY;
}

/* Resolve (unless literal) and connect to s->target. */
static void connect_with(struct session *s)
{
    struct worker *w = s->wl->w;
    if (cfg_of(s)->mode == MODE_SS_LOCAL && !s->dest) {
        /* ss-local: the client's target travels inside the tunnel; the
         * socket goes to the ss-server. */
        s->dest = s->target;
        s->target = NULL;
        if (sess_set_target(s, cfg_of(s)->ss_server.host, cfg_of(s)->ss_server.port, 0) < 0) {
            sess_close(s, END_LOCAL_ERROR);
            return;
        }
        if (use_pooled(s)) return;
    }
    if (cfg_of(s)->nvia && via_take_target(s) < 0) return;   /* to the first parent instead */
    struct net_addr lit;
    int literal = net_addr_from_literal(s->target->host, s->target->port, &lit) == 0;
    if (!literal && name_denied(s)) {
        sess_connect_failed(s, FAIL_NOT_ALLOWED, END_DENIED);
        return;
    }
    if (literal) {
        /* Fast path for IP literals: no resolver round trip. */
        if (!(s->targets = calloc(1, sizeof(*s->targets)))) {
            sess_close(s, END_LOCAL_ERROR);
            return;
        }
        memcpy(&s->targets->addr[0], &lit.u, lit.len);
        s->targets->len[0] = lit.len;
        s->targets->n = 1;
        s->target_idx = 0;
        connect_next(s);
        return;
    }
    struct resolver *r = rlistener_resolver(s->wl);
    enum resolver_family fam = cfg_of(s)->prefer_ipv6 ? RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4;
    s->state = SESS_RESOLVING;
    /* Backstop only: the resolver answers RESOLVER_TIMEOUT by its deadline. */
    loop_timer_arm_in(w->loop, &s->timer, cfg_of(s)->resolve_timeout_ms + 1000);
    s->rq = r ? resolver_lookup(r, s->target->host, s->target->port, fam, resolved_cb, s) : NULL;
    if (!s->rq) {
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    sess_kick(s);   /* early data is read while resolving */
}

static int dest_allowed(const struct session *s, const struct net_addr *a)
{
    size_t len;
    struct net_addr lit;
    if (!s->target->check_policy) return 1;
    const uint8_t *ip = net_addr_ip(a, &len);
    const char *host = net_addr_from_literal(s->target->host, 0, &lit) == 0 ? NULL : s->target->host;
    return acl_check_dest(&cfg_of(s)->dest_acl, host, len == 4 ? 4 : 6, ip, s->target->port);
}

static void connect_next(struct session *s)
{
    struct worker *w = s->wl->w;
    while (s->targets && s->target_idx < s->targets->n) {
        struct net_addr a;
        unsigned i = s->target_idx++;
        net_addr_from_sockaddr(&a, (const struct sockaddr *)&s->targets->addr[i], s->targets->len[i]);
        if (!dest_allowed(s, &a)) {
            s->last_errno = EACCES;
            continue;
        }
        int fd = sock_connect(&a);
        if (fd < 0) {
            s->last_errno = errno;
            continue;
        }
        if (sess_upstream_register(s, fd) < 0) {
            s->last_errno = errno;
            close(fd);
            continue;
        }
        s->upstream = a;
        s->state = SESS_CONNECTING;
        loop_timer_arm_in(w->loop, &s->timer, cfg_of(s)->connect_timeout_ms);
        sess_kick(s);
        return;
    }
    give_up(s);
}

static void abandon_attempt(struct session *s, int err)
{
    loop_io_close(s->wl->w->loop, &s->uio);
    s->last_errno = err;
    connect_next(s);
}

void connect_ready(struct session *s, uint32_t events)
{
    if (s->bind) {
        bind_ready(s, events);
        return;
    }
    if (s->state == SESS_VIA) {
        via_ready(s, events);
        return;
    }
    if (cfg_of(s)->mode == MODE_MUX_LOCAL) {
        mux_local_ready(s, events);
        return;
    }
    /* A failed connect always reports EPOLLERR; plain EPOLLOUT is success,
     * so SO_ERROR is only read when there is an error to name. */
    int err = events & (EPOLLERR | EPOLLHUP) ? sock_error(s->uio.fd) : 0;
    if (err) {
        abandon_attempt(s, err);
        return;
    }
    if (s->lb_idx >= 0) {
        lb_connected(&s->wl->lb, s->lb_idx);
        sess_metrics_server_connected(s, s->lb_start_us);
        s->lb_connected = 1;
    }
    drop_targets(s);
    if (cfg_of(s)->nvia) via_start(s);     /* the parents' handshakes first */
    else sess_relay_start(s, s->uio.fd);
}

void connect_timeout(struct session *s)
{
    if (s->bind) {
        bind_timeout(s);
        return;
    }
    if (s->state == SESS_VIA) {
        via_timeout(s);
        return;
    }
    if (cfg_of(s)->mode == MODE_MUX_LOCAL) {
        mux_local_timeout(s);
        return;
    }
    if (s->state == SESS_RESOLVING) {
        if (s->rq) resolver_cancel(s->rq);
        s->rq = NULL;
        sess_connect_failed(s, FAIL_HOST_UNREACH, END_RESOLVE_FAILED);
        return;
    }
    abandon_attempt(s, ETIMEDOUT);
}
