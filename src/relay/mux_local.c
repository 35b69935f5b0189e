/* mux_local.c - see mux_local.h. */
#include "relay/mux_local.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "net/sock.h"
#include "obs/log.h"
#include "proto/socks5.h"
#include "relay/connect.h"
#include "relay/front.h"
#include "relay/mux_conn.h"
#include "relay/rlistener.h"
#include "relay/session.h"
#include "resolver/resolver.h"

/* Re-dial delays: 100 ms doubling to 5 s; a connection that stayed up
 * this long starts the next series afresh. */
#define REDIAL_FIRST_MS 100u
#define REDIAL_MAX_MS   5000u
#define STABLE_MS       2000u

struct mux_slot {
    struct mux_pool *pool;
    struct mux_conn *c;            /* NULL while dialling or waiting to */
    struct resolver_query *rq;
    struct loop_timer redial;
    unsigned backoff_ms;
    unsigned failures;             /* dial failures in a row, for the log */
    uint64_t up_ms;
};

struct mux_pool {
    struct relay_listener *rl;
    int stopping;
    unsigned n;
    struct mux_slot slot[];
};

static void dial(struct mux_slot *sl);
static void serve_waiting(struct mux_pool *p);

static const struct listener_cfg *cfg_of_pool(const struct mux_pool *p) { return p->rl->cfg; }

static void schedule_redial(struct mux_slot *sl)
{
    struct mux_pool *p = sl->pool;
    if (p->stopping) return;
    sl->backoff_ms = sl->backoff_ms ? sl->backoff_ms * 2 : REDIAL_FIRST_MS;
    if (sl->backoff_ms > REDIAL_MAX_MS) sl->backoff_ms = REDIAL_MAX_MS;
    loop_timer_arm_in(p->rl->w->loop, &sl->redial, sl->backoff_ms);
}

/* Logged at the 1st, 2nd, 4th... failure in a row: visible, not a flood. */
static void log_dial_failure(struct mux_slot *sl, const char *what)
{
    const struct listener_cfg *lc = cfg_of_pool(sl->pool);
    unsigned n = ++sl->failures;
    if ((n & (n - 1)) != 0 || !log_enabled(LOG_WARN)) return;
    char host[256];
    log_sanitize(host, sizeof(host), lc->ss_server.host);
    log_warn("listener=%s cannot reach mux-server %s:%u: %s (%u time%s in a row; retrying)", lc->name, host,
             lc->ss_server.port, what, n, n == 1 ? "" : "s");
}

static void out_up(void *owner, struct mux_conn *c, int err)
{
    struct mux_slot *sl = owner;
    if (err) {
        log_dial_failure(sl, strerror(err));
        return;                    /* out_closed follows */
    }
    sl->up_ms = loop_now(sl->pool->rl->w->loop);
    if (sl->failures && log_enabled(LOG_INFO)) {
        char a[NET_ADDR_STRLEN];
        log_info("listener=%s mux=%llu connected to mux-server %s", cfg_of_pool(sl->pool)->name,
                 (unsigned long long)mux_conn_id(c), net_addr_format(mux_conn_peer(c), a, sizeof(a)));
    }
    sl->failures = 0;
    serve_waiting(sl->pool);
}

static void out_closed(void *owner, struct mux_conn *c, const char *why)
{
    struct mux_slot *sl = owner;
    (void)c;
    (void)why;
    sl->c = NULL;
    if (sl->up_ms && loop_now(sl->pool->rl->w->loop) - sl->up_ms >= STABLE_MS) sl->backoff_ms = 0;
    sl->up_ms = 0;
    schedule_redial(sl);
}

static const struct mux_conn_ops out_ops = { NULL, out_up, out_closed };

static void dial_addr(struct mux_slot *sl, const struct net_addr *a)
{
    const struct listener_cfg *lc = cfg_of_pool(sl->pool);
    struct mux_conn_cfg cfg = {
        .role = YAMUX_CLIENT, .max_streams = lc->mux_max_streams, .keepalive_ms = lc->mux_keepalive_ms,
        .dial_timeout_ms = lc->connect_timeout_ms, .listener = lc->name,
    };
    int fd = sock_connect(a);
    if (fd < 0) {
        log_dial_failure(sl, strerror(errno));
        schedule_redial(sl);
        return;
    }
    sl->c = mux_conn_new(sl->pool->rl->w->loop, fd, 1, a, &cfg, &out_ops, sl);
    if (!sl->c) {
        log_dial_failure(sl, "out of memory");
        schedule_redial(sl);
    }
}

static void resolved_cb(void *arg, int status, const struct resolved *res)
{
    struct mux_slot *sl = arg;
    struct net_addr a;
    sl->rq = NULL;
    if (status != RESOLVER_OK || res->n == 0) {
        log_dial_failure(sl, resolver_strerror(status));
        schedule_redial(sl);
        return;
    }
    net_addr_from_sockaddr(&a, (const struct sockaddr *)&res->addr[0], res->len[0]);
    dial_addr(sl, &a);
}

static void dial(struct mux_slot *sl)
{
    struct mux_pool *p = sl->pool;
    const struct listener_cfg *lc = cfg_of_pool(p);
    struct net_addr lit;
    if (p->stopping || sl->c || sl->rq) return;
    if (net_addr_from_literal(lc->ss_server.host, lc->ss_server.port, &lit) == 0) {
        dial_addr(sl, &lit);
        return;
    }
    struct resolver *r = rlistener_resolver(p->rl);
    enum resolver_family fam = lc->prefer_ipv6 ? RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4;
    sl->rq = r ? resolver_lookup(r, lc->ss_server.host, lc->ss_server.port, fam, resolved_cb, sl) : NULL;
    if (!sl->rq) {
        log_dial_failure(sl, "cannot start a DNS lookup");
        schedule_redial(sl);
    }
}

static void redial_cb(struct loop *l, struct loop_timer *t)
{
    (void)l;
    dial(t->owner);
}

struct mux_pool *mux_pool_new(struct relay_listener *rl)
{
    unsigned n = rl->cfg->mux_conns ? rl->cfg->mux_conns : 1;
    struct mux_pool *p = calloc(1, sizeof(*p) + n * sizeof(p->slot[0]));
    if (!p) return NULL;
    p->rl = rl;
    p->n = n;
    for (unsigned i = 0; i < n; i++) {
        p->slot[i].pool = p;
        loop_timer_init(&p->slot[i].redial, redial_cb, &p->slot[i]);
    }
    return p;
}

int mux_pool_start(struct mux_pool *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    for (unsigned i = 0; i < p->n; i++) dial(&p->slot[i]);
    return 0;
}

void mux_pool_drain(struct mux_pool *p)
{
    if (!p) return;
    p->stopping = 1;
    for (unsigned i = 0; i < p->n; i++)
        if (p->slot[i].c) mux_conn_goaway(p->slot[i].c);
}

void mux_pool_free(struct mux_pool *p)
{
    if (!p) return;
    p->stopping = 1;
    for (unsigned i = 0; i < p->n; i++) {
        struct mux_slot *sl = &p->slot[i];
        loop_timer_cancel(p->rl->w->loop, &sl->redial);
        if (sl->rq) resolver_cancel(sl->rq);
        sl->rq = NULL;
        if (sl->c) mux_conn_close(sl->c, "listener closed");
    }
    free(p);
}

/* ---- sessions ---- */

/* The usable connection with the fewest streams. */
static struct mux_conn *pick(const struct mux_pool *p)
{
    struct mux_conn *best = NULL;
    for (unsigned i = 0; i < p->n; i++) {
        struct mux_conn *c = p->slot[i].c;
        if (c && mux_conn_usable(c) && (!best || mux_conn_streams(c) < mux_conn_streams(best))) best = c;
    }
    return best;
}

/* 1 if some connection is up and every one that is up is full. */
static int all_full(const struct mux_pool *p)
{
    int full = 0;
    for (unsigned i = 0; i < p->n; i++) {
        struct mux_conn *c = p->slot[i].c;
        if (!c) continue;
        if (mux_conn_usable(c)) return 0;
        full |= mux_conn_full(c);
    }
    return full;
}

static void open_on(struct session *s, struct mux_conn *c)
{
    uint8_t first[SOCKS5_ADDR_MAX];
    size_t len = 0;
    if (s->wl->cfg->mux_socks && s->target) {
        len = front_socks_encode_target(s->target, first, sizeof(first));
        if (!len) {
            sess_connect_failed(s, FAIL_GENERAL, END_LOCAL_ERROR);
            return;
        }
    }
    s->upstream = *mux_conn_peer(c);
    if (mux_conn_open_stream(c, &s->uep, first, len) < 0) {
        sess_connect_failed(s, FAIL_GENERAL, errno == EAGAIN ? END_LIMIT : END_MUX_ERROR);
        return;
    }
    s->state = SESS_CONNECTING;
    loop_timer_arm_in(s->wl->w->loop, &s->timer, s->wl->cfg->connect_timeout_ms);
    sess_kick(s);
}

/* Sessions that waited for a connection, in order, while one is usable. */
static void serve_waiting(struct mux_pool *p)
{
    struct relay_listener *rl = p->rl;
    struct mux_conn *c;
    while (rl->qhead && (c = pick(p))) {
        struct session *s = rl->qhead;
        connect_queue_remove(s);
        open_on(s, c);
    }
}

void mux_local_connect(struct session *s)
{
    struct mux_pool *p = s->wl->mux_pool;
    struct mux_conn *c = p ? pick(p) : NULL;
    if (c) {
        open_on(s, c);
        return;
    }
    if (p && all_full(p)) {
        /* Every connection at --mux-max-streams: refused now, as a full
         * server refuses a stream, rather than queued behind streams that
         * may live for hours. */
        sess_connect_failed(s, FAIL_GENERAL, END_LIMIT);
        return;
    }
    /* None up (yet, or between re-dials): wait, at most the connect
     * timeout, watching the client meanwhile. */
    if (!p || p->stopping || connect_queue_push(s) < 0) {
        sess_connect_failed(s, FAIL_GENERAL, END_MUX_ERROR);
        return;
    }
    s->state = SESS_CONNECTING;
    loop_timer_arm_in(s->wl->w->loop, &s->timer, s->wl->cfg->connect_timeout_ms);
    sess_kick(s);
}

void mux_local_ready(struct session *s, uint32_t events)
{
    int err = mux_endpoint_error(&s->uep);
    if (err || (events & EPOLLERR)) {
        sess_connect_failed(s, FAIL_GENERAL, err == ECONNABORTED ? END_MUX_ERROR : END_MUX_REFUSED);
        return;
    }
    if (events & EPOLLOUT) sess_relay_start_endpoint(s);
}

void mux_local_timeout(struct session *s)
{
    connect_queue_remove(s);
    sess_connect_failed(s, FAIL_TIMEOUT, END_CONNECT_TIMEOUT);
}
