/* connect.c - see connect.h. */
#include "relay/connect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/worker.h"
#include "net/sock.h"
#include "obs/log.h"
#include "policy/acl.h"
#include "relay/session.h"
#include "resolver/resolver.h"

static void connect_next(struct session *s);

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

static void release_server(struct session *s, int failed)
{
    if (s->lb_idx < 0) return;
    lb_release(&s->wl->lb, s->lb_idx, failed);
    s->lb_idx = -1;
}

static void drop_targets(struct session *s)
{
    free(s->targets);
    s->targets = NULL;
    s->ntargets = s->target_idx = 0;
}

void connect_cleanup(struct session *s)
{
    if (s->rq) resolver_cancel(s->rq);
    s->rq = NULL;
    drop_targets(s);
    free(s->target);
    s->target = NULL;
    free(s->dest);
    s->dest = NULL;
    release_server(s, 0);
}

/* Every address failed: try another upstream server (relay) or give up. */
static void give_up(struct session *s)
{
    enum sess_fail why;
    enum sess_end end;
    fail_from_errno(s->last_errno, &why, &end);
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

static void resolved_cb(void *arg, int status, const struct resolved *res)
{
    struct session *s = arg;
    s->rq = NULL;
    if (status != RESOLVER_OK || res->n == 0) {
        log_debug("sess=%llu resolve %s failed: %s", (unsigned long long)s->id, s->target->host,
                  resolver_strerror(status));
        if (s->lb_idx >= 0) {
            s->last_errno = EHOSTUNREACH;
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
    s->ntargets = (uint8_t)res->n;
    s->target_idx = 0;
    connect_next(s);
}

/* Picks the next server for relay listeners; fills s->target. */
static int pick_server(struct session *s)
{
    int idx = lb_pick(&s->wl->lb, s->lb_tried);
    if (idx < 0) return -1;
    const struct upstream_cfg *u = &cfg_of(s)->upstreams[idx];
    s->lb_idx = (int8_t)idx;
    s->lb_tried |= 1ULL << idx;
    s->lb_attempts++;
    return sess_set_target(s, u->hp.host, u->hp.port, 0);
}

void connect_start(struct session *s)
{
    struct worker *w = s->wl->w;
    if (cfg_of(s)->mode == MODE_RELAY && pick_server(s) < 0) {
        sess_connect_failed(s, FAIL_GENERAL, END_CONNECT_ERROR);
        return;
    }
    if (cfg_of(s)->mode == MODE_SS_LOCAL && !s->dest) {
        /* ss-local: the client's target travels inside the tunnel; the
         * socket goes to the ss-server. */
        s->dest = s->target;
        s->target = NULL;
        if (sess_set_target(s, cfg_of(s)->ss_server.host, cfg_of(s)->ss_server.port, 0) < 0) {
            sess_close(s, END_LOCAL_ERROR);
            return;
        }
    }
    struct net_addr lit;
    if (net_addr_from_literal(s->target->host, s->target->port, &lit) == 0) {
        /* Fast path for IP literals: no resolver round trip. */
        if (!(s->targets = calloc(1, sizeof(*s->targets)))) {
            sess_close(s, END_LOCAL_ERROR);
            return;
        }
        memcpy(&s->targets->addr[0], &lit.u, lit.len);
        s->targets->len[0] = lit.len;
        s->targets->n = 1;
        s->ntargets = 1;
        s->target_idx = 0;
        connect_next(s);
        return;
    }
    struct resolver *r = worker_resolver(s->wl);
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
    const uint8_t *ip;
    int fam;
    if (!s->target->check_policy) return 1;
    if (a->u.sa.sa_family == AF_INET) {
        ip = (const uint8_t *)&a->u.in.sin_addr;
        fam = 4;
    } else {
        ip = a->u.in6.sin6_addr.s6_addr;
        fam = 6;
    }
    struct net_addr lit;
    const char *host = net_addr_from_literal(s->target->host, 0, &lit) == 0 ? NULL : s->target->host;
    return acl_check_dest(&cfg_of(s)->dest_acl, host, fam, ip, s->target->port);
}

static void connect_next(struct session *s)
{
    struct worker *w = s->wl->w;
    while (s->target_idx < s->ntargets) {
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
    int err = sock_error(s->uio.fd);
    (void)events;
    if (err) {
        abandon_attempt(s, err);
        return;
    }
    if (s->lb_idx >= 0) s->wl->lb.servers[s->lb_idx].fails = 0;
    drop_targets(s);
    sess_relay_start(s, s->uio.fd);
}

void connect_timeout(struct session *s)
{
    if (s->state == SESS_RESOLVING) {
        if (s->rq) resolver_cancel(s->rq);
        s->rq = NULL;
        sess_connect_failed(s, FAIL_HOST_UNREACH, END_RESOLVE_FAILED);
        return;
    }
    abandon_attempt(s, ETIMEDOUT);
}
