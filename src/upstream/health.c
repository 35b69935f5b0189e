/* health.c - see health.h.
 *
 * Each server has one state machine and one timer. The timer means "start
 * the next check" while the server is idle and "deadline of this check"
 * while a check is in flight, so at most one check per server can exist.
 *
 *   IDLE --timer--> RESOLVING --answer--> CONNECTING --writable--> SENDING
 *                                                      \             |
 *                                                       `---------> READING
 *   any state but IDLE --done/failure/deadline--> IDLE (timer = next start)
 *
 * A check is only ever started from the server's timer, never directly from
 * the callback that ended the previous one: timers run after the loop's I/O
 * batch, so an event still queued for the previous socket cannot reach the
 * loop_io once it holds the next socket.
 */
#include "upstream/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "net/sock.h"
#include "obs/log.h"
#include "resolver/resolver.h"

#define HEALTH_DEFAULT_INTERVAL_MS 2000u
#define HEALTH_DEFAULT_TIMEOUT_MS  2000u

enum health_state { HS_IDLE, HS_RESOLVING, HS_CONNECTING, HS_SENDING, HS_READING };

/* Why a check failed; errno detail only for HF_ERRNO. */
enum health_fail {
    HF_NONE,
    HF_RESOLVE,         /* resolver status in `err` */
    HF_RESOLVE_TIMEOUT,
    HF_REFUSED,
    HF_CONNECT_TIMEOUT,
    HF_RESET,
    HF_UNREACH,
    HF_ERRNO,           /* other socket error, errno in `err` */
    HF_SEND_TIMEOUT,
    HF_ANSWER_TIMEOUT,
    HF_CLOSED,          /* closed before the expected bytes arrived */
    HF_MISMATCH,        /* HEALTH_RX_MAX bytes without the expected bytes */
    HF_NOMEM,
};

struct health_server {
    struct health_checker *hc;
    int idx;
    enum health_state state;
    struct host_port hp;
    struct loop_timer timer;         /* next start (IDLE) or deadline */
    struct loop_io io;               /* the check's socket, fd -1 between checks */
    struct resolver_query *q;
    uint64_t next_start;             /* absolute ms: earliest start of the next check */
    size_t sent;                     /* bytes of hc->send written */
    char *rx;                        /* HEALTH_RX_MAX bytes, only while READING */
    size_t rx_len;
};

struct health_checker {
    struct loop *loop;
    struct resolver *resolver;
    struct health_shared *shared;
    char name[64];
    unsigned interval_ms, timeout_ms;
    enum resolver_family fam;
    char send[HEALTH_SEND_MAX];
    size_t send_len;
    char expect[HEALTH_EXPECT_MAX + 1];
    size_t expect_len;
    struct lb_group lb;              /* private: rise/fall bookkeeping only */
    struct lb_server lb_servers[LB_MAX_SERVERS];
    size_t n;
    struct health_server srv[];
};

static void health_timer_cb(struct loop *l, struct loop_timer *t);
static void health_io_cb(struct loop *l, struct loop_io *io, uint32_t events);

/* ---- results ---- */

static const char *health_fail_text(enum health_fail why, int err, char *buf, size_t len)
{
    switch (why) {
    case HF_NONE: return "ok";
    case HF_RESOLVE:
        snprintf(buf, len, "resolve failed: %s", resolver_strerror(err));
        return buf;
    case HF_RESOLVE_TIMEOUT: return "resolve timeout";
    case HF_REFUSED: return "connect refused";
    case HF_CONNECT_TIMEOUT: return "connect timeout";
    case HF_RESET: return "connection reset";
    case HF_UNREACH: return "unreachable";
    case HF_ERRNO: {
        char eb[96];
        /* GNU strerror_r: returns a pointer, maybe not to eb. */
        snprintf(buf, len, "connect error: %s", strerror_r(err, eb, sizeof(eb)));
        return buf;
    }
    case HF_SEND_TIMEOUT: return "send timeout";
    case HF_ANSWER_TIMEOUT: return "timeout waiting for the expected answer";
    case HF_CLOSED: return "closed before the expected answer";
    case HF_MISMATCH: return "unexpected answer";
    case HF_NOMEM: return "out of memory";
    }
    return "failed";
}

static enum health_fail health_fail_from_errno(int err)
{
    switch (err) {
    case ECONNREFUSED: return HF_REFUSED;
    case ETIMEDOUT: return HF_CONNECT_TIMEOUT;
    case ECONNRESET: case EPIPE: case ECONNABORTED: return HF_RESET;
    case ENETUNREACH: case EHOSTUNREACH: return HF_UNREACH;
    case ENOMEM: case ENOBUFS: return HF_NOMEM;
    default: return HF_ERRNO;
    }
}

static size_t health_count_up(const struct health_checker *hc)
{
    size_t up = 0;
    for (size_t i = 0; i < hc->n; i++) up += (size_t)(lb_is_up(&hc->lb, (int)i) && hc->srv[i].hp.host[0]);
    return up;
}

static size_t health_count(const struct health_checker *hc)
{
    size_t n = 0;
    for (size_t i = 0; i < hc->n; i++) n += hc->srv[i].hp.host[0] != 0;
    return n;
}

/* "host:port", "[v6]:port" for IPv6 literals, sanitised for a log field. */
static void health_label(const struct health_server *s, char *out, size_t len)
{
    char host[sizeof(s->hp.host)];
    log_sanitize(host, sizeof(host), s->hp.host);
    host_port_format(host, s->hp.port, out, len);
}

static void health_log_change(const struct health_checker *hc, const struct health_server *s,
                              int up, enum health_fail why, int err)
{
    if (!log_enabled(up ? LOG_INFO : LOG_WARN)) return;
    char label[sizeof(s->hp.host) + 16], buf[160];
    health_label(s, label, sizeof(label));
    if (up)
        log_msg(LOG_INFO, "upstream %s/%s is UP (%zu of %zu up)", hc->name, label,
                health_count_up(hc), health_count(hc));
    else
        log_msg(LOG_WARN, "upstream %s/%s is DOWN (%s, %zu of %zu up)", hc->name, label,
                health_fail_text(why, err, buf, sizeof(buf)), health_count_up(hc), health_count(hc));
}

/* Releases what the check in flight holds. A failed check's socket is reset
 * (linger 0: no FIN_WAIT/TIME_WAIT left behind for a dead peer); a passed
 * one is closed normally, with a FIN. */
static void health_abort(struct health_server *s, int reset)
{
    struct health_checker *hc = s->hc;
    resolver_cancel(s->q);
    s->q = NULL;
    if (s->io.fd >= 0) {
        if (reset) sock_set_linger0(s->io.fd);
        loop_io_close(hc->loop, &s->io);
    }
    free(s->rx);
    s->rx = NULL;
    s->rx_len = 0;
    s->sent = 0;
}

/* Ends the check in flight: applies rise/fall, publishes, logs a change and
 * schedules the next check (never earlier than one interval after this
 * one's start). */
static void health_done(struct health_server *s, enum health_fail why, int err)
{
    struct health_checker *hc = s->hc;
    struct health_shared *sh = &hc->shared[s->idx];
    int ok = why == HF_NONE;

    health_abort(s, !ok);
    s->state = HS_IDLE;
    if (lb_health_result(&hc->lb, s->idx, ok)) {
        int up = lb_is_up(&hc->lb, s->idx);
        __atomic_store_n(&sh->up, up, __ATOMIC_RELEASE);
        __atomic_add_fetch(&sh->transitions, 1, __ATOMIC_RELAXED);
        health_log_change(hc, s, up, why, err);
    } else if (log_enabled(LOG_DEBUG)) {
        char label[sizeof(s->hp.host) + 16], buf[160];
        health_label(s, label, sizeof(label));
        log_debug("health %s/%s: %s", hc->name, label, health_fail_text(why, err, buf, sizeof(buf)));
    }
    __atomic_store_n(&sh->last_ok, ok, __ATOMIC_RELEASE);
    __atomic_add_fetch(&sh->gen, 1, __ATOMIC_RELEASE);

    uint64_t now = loop_now(hc->loop);
    loop_timer_arm(hc->loop, &s->timer, s->next_start > now ? s->next_start : now);
}

/* ---- the check ---- */

/* After connect (and send): waits for the answer, or passes. */
static void health_after_send(struct health_server *s)
{
    struct health_checker *hc = s->hc;
    if (!hc->expect_len) {
        health_done(s, HF_NONE, 0);
        return;
    }
    s->rx = malloc(HEALTH_RX_MAX);
    if (!s->rx) {
        health_done(s, HF_NOMEM, ENOMEM);
        return;
    }
    s->rx_len = 0;
    s->state = HS_READING;
    if (loop_io_want(hc->loop, &s->io, LOOP_READ) < 0) health_done(s, health_fail_from_errno(errno), errno);
}

static void health_send_more(struct health_server *s)
{
    struct health_checker *hc = s->hc;
    while (s->sent < hc->send_len) {
        ssize_t w = send(s->io.fd, hc->send + s->sent, hc->send_len - s->sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;   /* wait for EPOLLOUT */
            health_done(s, health_fail_from_errno(errno), errno);
            return;
        }
        s->sent += (size_t)w;
    }
    health_after_send(s);
}

static void health_connected(struct health_server *s)
{
    if (s->hc->send_len) {
        s->state = HS_SENDING;
        health_send_more(s);
    } else {
        health_after_send(s);
    }
}

/* One read per wakeup (at most HEALTH_RX_MAX bytes per check anyway). Only
 * the new bytes, plus expect_len - 1 before them, are searched. */
static void health_read(struct health_server *s)
{
    struct health_checker *hc = s->hc;
    ssize_t r = recv(s->io.fd, s->rx + s->rx_len, HEALTH_RX_MAX - s->rx_len, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        health_done(s, health_fail_from_errno(errno), errno);
        return;
    }
    if (r == 0) {
        health_done(s, s->rx_len ? HF_MISMATCH : HF_CLOSED, 0);
        return;
    }
    size_t from = s->rx_len >= hc->expect_len - 1 ? s->rx_len - (hc->expect_len - 1) : 0;
    s->rx_len += (size_t)r;
    if (memmem(s->rx + from, s->rx_len - from, hc->expect, hc->expect_len))
        health_done(s, HF_NONE, 0);
    else if (s->rx_len == HEALTH_RX_MAX)
        health_done(s, HF_MISMATCH, 0);
}

static void health_io_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct health_server *s = io->owner;
    (void)l;
    switch (s->state) {
    case HS_CONNECTING: {
        int err = sock_error(io->fd);
        if (err) health_done(s, health_fail_from_errno(err), err);
        else if (events & LOOP_WRITE) health_connected(s);
        else if (events & (EPOLLERR | EPOLLHUP)) health_done(s, HF_RESET, ECONNRESET);
        break;
    }
    case HS_SENDING:
        health_send_more(s);
        break;
    case HS_READING:
        health_read(s);
        break;
    default:
        break;      /* not reached: the io is closed outside these states */
    }
}

static void health_resolved(void *arg, int status, const struct resolved *res)
{
    struct health_server *s = arg;
    struct health_checker *hc = s->hc;
    struct net_addr a;

    s->q = NULL;
    if (status == RESOLVER_OK && res->n == 0) status = RESOLVER_NOTFOUND;   /* not expected */
    if (status != RESOLVER_OK) {
        health_done(s, status == RESOLVER_TIMEOUT ? HF_RESOLVE_TIMEOUT : HF_RESOLVE, status);
        return;
    }
    net_addr_from_sockaddr(&a, (const struct sockaddr *)&res->addr[0], res->len[0]);
    int fd = sock_connect(&a);
    if (fd < 0) {
        health_done(s, health_fail_from_errno(errno), errno);
        return;
    }
    if (loop_io_add(hc->loop, &s->io, fd, LOOP_WRITE, health_io_cb, s) < 0) {
        int e = errno;
        sock_set_linger0(fd);
        close(fd);
        health_done(s, health_fail_from_errno(e), e);
        return;
    }
    s->state = HS_CONNECTING;
}

static void health_begin(struct health_server *s)
{
    struct health_checker *hc = s->hc;
    uint64_t now = loop_now(hc->loop);

    s->next_start = now + hc->interval_ms;
    s->state = HS_RESOLVING;
    loop_timer_arm(hc->loop, &s->timer, now + hc->timeout_ms);
    s->q = resolver_lookup(hc->resolver, s->hp.host, s->hp.port, hc->fam, health_resolved, s);
    if (!s->q) health_done(s, HF_NOMEM, ENOMEM);
}

static void health_timer_cb(struct loop *l, struct loop_timer *t)
{
    struct health_server *s = t->owner;
    (void)l;
    switch (s->state) {
    case HS_IDLE: health_begin(s); break;
    case HS_RESOLVING: health_done(s, HF_RESOLVE_TIMEOUT, 0); break;
    case HS_CONNECTING: health_done(s, HF_CONNECT_TIMEOUT, ETIMEDOUT); break;
    case HS_SENDING: health_done(s, HF_SEND_TIMEOUT, ETIMEDOUT); break;
    case HS_READING: health_done(s, HF_ANSWER_TIMEOUT, ETIMEDOUT); break;
    }
}

/* ---- setup ---- */

static int health_check_opts(const struct health_opts *o, size_t n, char *err, size_t errlen)
{
    if (n == 0) {
        snprintf(err, errlen, "health check: no servers");
        return -1;
    }
    if (n > LB_MAX_SERVERS) {
        snprintf(err, errlen, "health check: %zu servers, at most %d", n, LB_MAX_SERVERS);
        return -1;
    }
    if (o->send_len > HEALTH_SEND_MAX || (o->send_len && !o->send)) {
        snprintf(err, errlen, "health check: send is %zu bytes, at most %u", o->send_len,
                 HEALTH_SEND_MAX);
        return -1;
    }
    if (o->expect && strlen(o->expect) > HEALTH_EXPECT_MAX) {
        snprintf(err, errlen, "health check: expect is %zu bytes, at most %u", strlen(o->expect),
                 HEALTH_EXPECT_MAX);
        return -1;
    }
    return 0;
}

static int health_check_server(const struct host_port *hp, size_t i, char *err, size_t errlen)
{
    size_t hl = strnlen(hp->host, sizeof(hp->host));
    if (hl == 0 || hl == sizeof(hp->host)) {
        snprintf(err, errlen, "health check: server %zu: %s", i + 1,
                 hl ? "host name too long" : "no host (\":PORT\" cannot be checked)");
        return -1;
    }
    if (hp->port == 0) {
        snprintf(err, errlen, "health check: server %zu: port 0", i + 1);
        return -1;
    }
    return 0;
}

static void health_apply_opts(struct health_checker *hc, const struct health_opts *o)
{
    hc->interval_ms = o->interval_ms ? o->interval_ms : HEALTH_DEFAULT_INTERVAL_MS;
    hc->timeout_ms = o->timeout_ms ? o->timeout_ms
                   : hc->interval_ms < HEALTH_DEFAULT_TIMEOUT_MS ? hc->interval_ms
                   : HEALTH_DEFAULT_TIMEOUT_MS;
    hc->lb.rise = o->rise ? o->rise : 2;
    hc->lb.fall = o->fall ? o->fall : 3;
    hc->fam = o->prefer_ipv6 ? RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4;
    if (o->send_len) memcpy(hc->send, o->send, o->send_len);
    hc->send_len = o->send_len;
    if (o->expect) {
        hc->expect_len = strlen(o->expect);
        memcpy(hc->expect, o->expect, hc->expect_len + 1);
    }
}

struct health_checker *health_start(struct loop *l, struct resolver *r, const char *name,
                                    const struct host_port *servers, size_t n,
                                    struct health_shared *shared, const struct health_opts *o,
                                    char *err, size_t errlen)
{
    const struct health_opts defaults = { 0 };
    struct health_checker *hc;

    if (!o) o = &defaults;
    if (health_check_opts(o, n, err, errlen) < 0) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!(o->slots && !servers[i].host[0]) && health_check_server(&servers[i], i, err, errlen) < 0)
            return NULL;

    hc = calloc(1, sizeof(*hc) + n * sizeof(hc->srv[0]));
    if (!hc) {
        snprintf(err, errlen, "health check: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) hc->lb_servers[i].weight = 1;
    if (lb_group_init(&hc->lb, hc->lb_servers, n, NULL, err, errlen) < 0) {
        free(hc);
        return NULL;
    }
    hc->loop = l;
    hc->resolver = r;
    hc->shared = shared;
    hc->n = n;
    log_sanitize(hc->name, sizeof(hc->name), name ? name : "-");
    health_apply_opts(hc, o);

    /* The clock, not loop_now(): the loop may not have run for a while. */
    uint64_t now = clock_now_ms();
    for (size_t i = 0; i < n; i++) {
        struct health_server *s = &hc->srv[i];
        s->hc = hc;
        s->idx = (int)i;
        s->hp = servers[i];
        s->io.fd = -1;
        shared[i].up = 1;
        shared[i].gen = 0;
        loop_timer_init(&s->timer, health_timer_cb, s);
        /* Stagger: server i starts i/n of an interval in. */
        if (s->hp.host[0]) loop_timer_arm(l, &s->timer, now + (uint64_t)hc->interval_ms * i / n);
    }
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return hc;
}

void health_set_server(struct health_checker *hc, size_t i, const struct host_port *hp)
{
    static const struct host_port parked;
    if (!hc || i >= hc->n) return;
    struct health_server *s = &hc->srv[i];
    struct health_shared *sh = &hc->shared[i];
    if (!hp || health_check_server(hp, i, NULL, 0) < 0) hp = &parked;
    int same = s->hp.port == hp->port && strcmp(s->hp.host, hp->host) == 0;
    if (same && (hp->host[0] == 0 || loop_timer_armed(&s->timer) || s->state != HS_IDLE)) return;
    loop_timer_cancel(hc->loop, &s->timer);
    health_abort(s, 1);
    s->state = HS_IDLE;
    s->hp = *hp;
    (void)lb_set_up(&hc->lb, (int)i, 1);
    __atomic_store_n(&sh->up, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&sh->last_ok, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&sh->gen, 1, __ATOMIC_RELEASE);
    if (!hp->host[0]) return;
    uint64_t now = loop_now(hc->loop), spread = hc->interval_ms < 1000 ? hc->interval_ms : 1000;
    s->next_start = now;
    loop_timer_arm(hc->loop, &s->timer, now + spread * i / hc->n);
}

void health_stop(struct health_checker *hc)
{
    if (!hc) return;
    for (size_t i = 0; i < hc->n; i++) {
        struct health_server *s = &hc->srv[i];
        loop_timer_cancel(hc->loop, &s->timer);
        health_abort(s, 1);
        s->state = HS_IDLE;
    }
    /* The loop_ios live in hc: a stale event of this batch may still point
     * into it (it sees fd -1 and is dropped). */
    loop_defer_free(hc->loop, hc, free);
}

/* ---- readers ---- */

size_t health_sync(const struct health_shared *shared, unsigned *seen, struct lb_group *g)
{
    size_t changed = 0;
    for (size_t i = 0; i < g->n; i++) {
        unsigned gen = health_gen(&shared[i]);
        if (gen == seen[i]) continue;
        seen[i] = gen;
        int up = health_is_up(&shared[i]);
        /* A worker's passive ejection ends only with a check that passed:
         * a failed check (still "up" until `fall` of them) must not put a
         * server back that this worker saw failing. */
        if (up && !lb_is_up(g, (int)i) && !__atomic_load_n(&shared[i].last_ok, __ATOMIC_ACQUIRE)) continue;
        if (lb_is_up(g, (int)i) != up) changed += (size_t)lb_set_up(g, (int)i, up);
    }
    return changed;
}
