/* resolver.c - c-ares on ferry's epoll loop.
 *
 * How c-ares is driven: ARES_OPT_SOCK_STATE_CB tells us which sockets to
 * watch (struct resolver_sock, one per c-ares socket); readiness calls
 * ares_process_fd(); one loop timer (ares_timer) is kept at ares_timeout()
 * and re-evaluated after every step that can change it (a lookup started,
 * a socket or timer processed). We do not use the loop's before-sleep hook:
 * there is only one per loop and the worker may need it.
 *
 * Ownership of a query (struct resolver_query). Two parties may hold it:
 *   - the user, while q->cb != NULL: from resolver_lookup() until the
 *     callback is entered, resolver_cancel() or resolver_free();
 *   - c-ares, while q->ares_busy: from ares_getaddrinfo() until c-ares calls
 *     resolver_ares_cb() - which it always does exactly once, with the answer,
 *     its own timeout, or ARES_EDESTRUCTION from ares_destroy().
 * Whoever lets go last frees it (resolver_query_release). Our deadline timer
 * can answer the user with RESOLVER_TIMEOUT while c-ares still holds the
 * query; the query then lives on, detached, until c-ares lets go. Queries own
 * no loop_io, so they are freed at once (no deferred free needed).
 *
 * Bounds: nbusy counts queries with ares_busy, ndetached those of them with
 * cb == NULL. Both change only where those two fields do (resolver_ares_cb,
 * resolver_query_let_go, resolver_lookup), and resolver_lookup checks them
 * before handing a query to c-ares (see resolver.h).
 *
 * User callbacks never run inside c-ares: resolver_ares_cb only records the
 * answer and re-arms the query's timer at "now"; the timer delivers it. So
 * user code may start lookups, cancel, or free the resolver without
 * re-entering c-ares, and the "never from inside resolver_lookup" rule holds
 * even when c-ares answers synchronously (/etc/hosts, bad names).
 */
#include "resolver/resolver.h"

#include "core/loop.h"
#include "obs/metrics.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESOLVER_DEFAULT_TIMEOUT_MS 5000u
#define RESOLVER_TRIES 2              /* per server: waits t then 2t (c-ares doubles) */
#define RESOLVER_MAX_TTL_S 300u
#define RESOLVER_NEG_TTL_S 5u         /* NXDOMAIN / NODATA */
#define RESOLVER_NAME_MAX 254         /* 253 + an optional trailing dot */
#define RESOLVER_CACHE_MAX (1u << 20)
#define RESOLVER_DEFAULT_MAX_INFLIGHT 1024u

/* Family classes: which records were asked for; also the cache key part. */
enum { RESOLVER_CLS_ANY = 0, RESOLVER_CLS_V4 = 1, RESOLVER_CLS_V6 = 2 };

/* An answer before ordering: what c-ares, a literal or the cache gave us. */
struct resolver_answer {
    int status;                   /* RESOLVER_OK or a failure */
    unsigned n4, n6;
    unsigned ttl;                 /* seconds; 0 = none known */
    struct sockaddr_in a4[RESOLVER_MAX_ADDRS];
    struct sockaddr_in6 a6[RESOLVER_MAX_ADDRS];
};

/* One socket c-ares asked us to watch. Owns a loop_io, hence deferred free. */
struct resolver_sock {
    struct loop_io io;
    struct resolver *r;
    struct resolver_sock *next;
};

struct resolver_cache_entry {
    struct resolver_cache_entry *hnext;             /* hash chain */
    struct resolver_cache_entry *newer, *older;     /* LRU list */
    uint64_t expires_ms;
    int cls;
    struct resolver_answer ans;
    char name[];
};

struct resolver_cache {
    unsigned cap, len;
    size_t mask;                                    /* buckets - 1 */
    struct resolver_cache_entry **buckets;
    struct resolver_cache_entry *newest, *oldest;
};

struct resolver_query {
    struct resolver *r;
    struct resolver_query *prev, *next;   /* r->queries: every live query */
    resolver_cb *cb;                      /* NULL once the user let go */
    void *arg;
    int ares_busy;                        /* c-ares holds a pointer to us */
    int done;                             /* ans is final; timer delivers it */
    int in_lookup, fired_in_lookup;       /* see resolver_query_timer_cb */
    uint8_t answered_by;                  /* ANSWER_*: where the answer came from */
    uint64_t start_us;                    /* lookups that went to DNS (metrics) */
    uint16_t port;
    enum resolver_family fam;
    struct loop_timer timer;              /* deadline, then "deliver now" */
    struct resolver_answer ans;
    resolver_srv_cb *scb;                 /* SRV lookups: the user's callback */
    struct resolved_srv *srv;             /* ... and its answer (owned) */
    char name[];                          /* lowercased: c-ares input, cache key */
};

struct resolver {
    struct loop *loop;
    ares_channel ch;
    int destroying;
    int arming;                           /* inside loop_timer_arm(ares_timer) */
    unsigned timeout_ms;
    size_t nqueries;
    size_t nbusy, ndetached;              /* see "Bounds" above */
    size_t max_inflight, max_detached;
    uint64_t refused;
    struct resolver_query *queries;
    struct resolver_sock *socks;
    struct loop_timer ares_timer;
    struct resolver_cache cache;
};

static pthread_once_t resolver_once = PTHREAD_ONCE_INIT;

static void resolver_library_init(void)
{
    /* The result is read back with ares_library_initialized(). */
    (void)ares_library_init(ARES_LIB_INIT_ALL);
}

const char *resolver_strerror(int status)
{
    switch (status) {
    case RESOLVER_OK: return "ok";
    case RESOLVER_NOTFOUND: return "host not found";
    case RESOLVER_TIMEOUT: return "DNS timeout";
    case RESOLVER_FAILED: return "DNS failure";
    case RESOLVER_BUSY: return "too many DNS lookups in flight";
    default: return "unknown resolver status";
    }
}

size_t resolver_outstanding(const struct resolver *r) { return r->nqueries; }

void resolver_get_stats(const struct resolver *r, struct resolver_stats *out)
{
    out->inflight = r->nbusy;
    out->detached = r->ndetached;
    out->refused = r->refused;
}

static int resolver_map_status(int ares_status)
{
    switch (ares_status) {
    case ARES_SUCCESS: return RESOLVER_OK;
    case ARES_ENOTFOUND: case ARES_ENODATA: case ARES_ENONAME: case ARES_EBADNAME:
        return RESOLVER_NOTFOUND;
    case ARES_ETIMEOUT: return RESOLVER_TIMEOUT;
    default: return RESOLVER_FAILED;
    }
}

static int resolver_family_class(enum resolver_family fam)
{
    if (fam == RESOLVER_IPV4_ONLY) return RESOLVER_CLS_V4;
    if (fam == RESOLVER_IPV6_ONLY) return RESOLVER_CLS_V6;
    return RESOLVER_CLS_ANY;
}

/* ---- answers ---- */

static void resolver_answer_add4(struct resolver_answer *a, const struct sockaddr_in *sin)
{
    for (unsigned i = 0; i < a->n4; i++)
        if (a->a4[i].sin_addr.s_addr == sin->sin_addr.s_addr) return;
    if (a->n4 == RESOLVER_MAX_ADDRS) return;
    a->a4[a->n4] = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr = sin->sin_addr };
    a->n4++;
}

static void resolver_answer_add6(struct resolver_answer *a, const struct sockaddr_in6 *sin6)
{
    for (unsigned i = 0; i < a->n6; i++)
        if (!memcmp(&a->a6[i].sin6_addr, &sin6->sin6_addr, sizeof(sin6->sin6_addr)) &&
            a->a6[i].sin6_scope_id == sin6->sin6_scope_id) return;
    if (a->n6 == RESOLVER_MAX_ADDRS) return;
    a->a6[a->n6] = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_addr = sin6->sin6_addr,
                                          .sin6_scope_id = sin6->sin6_scope_id };
    a->n6++;
}

/* Fills `a` from a c-ares result; returns the smallest TTL seen (seconds). */
static unsigned resolver_answer_from_ares(struct resolver_answer *a, const struct ares_addrinfo *ai)
{
    unsigned ttl = RESOLVER_MAX_TTL_S;
    for (const struct ares_addrinfo_node *n = ai ? ai->nodes : NULL; n; n = n->ai_next) {
        if (n->ai_family == AF_INET && n->ai_addrlen >= sizeof(struct sockaddr_in))
            resolver_answer_add4(a, (const struct sockaddr_in *)(const void *)n->ai_addr);
        else if (n->ai_family == AF_INET6 && n->ai_addrlen >= sizeof(struct sockaddr_in6))
            resolver_answer_add6(a, (const struct sockaddr_in6 *)(const void *)n->ai_addr);
        else
            continue;
        if (n->ai_ttl < 0) ttl = 0;
        else if ((unsigned)n->ai_ttl < ttl) ttl = (unsigned)n->ai_ttl;
    }
    return ttl;
}

/* "1.2.3.4", "::1" or "[::1]". Returns 1 and fills `a` if `host` is one. */
static int resolver_answer_literal(struct resolver_answer *a, const char *host)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
    char buf[INET6_ADDRSTRLEN];
    size_t len = strlen(host);

    if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
        resolver_answer_add4(a, &sin);
        return 1;
    }
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
        resolver_answer_add6(a, &sin6);
        return 1;
    }
    return 0;
}

static void resolver_put(struct resolved *out, const void *sa, socklen_t len, uint16_t port)
{
    memcpy(&out->addr[out->n], sa, len);
    if (len == sizeof(struct sockaddr_in))
        ((struct sockaddr_in *)(void *)&out->addr[out->n])->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)(void *)&out->addr[out->n])->sin6_port = htons(port);
    out->len[out->n++] = len;
}

/* Orders `a` for `fam` into `out`; returns the status to report. */
static int resolver_order(const struct resolver_answer *a, enum resolver_family fam,
                          uint16_t port, struct resolved *out)
{
    int v6_first = fam == RESOLVER_PREFER_IPV6 || fam == RESOLVER_IPV6_ONLY;
    unsigned n4 = fam == RESOLVER_IPV6_ONLY ? 0 : a->n4;
    unsigned n6 = fam == RESOLVER_IPV4_ONLY ? 0 : a->n6;
    unsigned nfirst = v6_first ? n6 : n4, nsecond = v6_first ? n4 : n6;
    unsigned room = RESOLVER_MAX_ADDRS - (nsecond ? 1 : 0);    /* keep a fallback slot */

    out->n = 0;
    out->ttl = a->ttl;
    if (a->status != RESOLVER_OK) return a->status;
    if (nfirst > room) nfirst = room;
    if (nsecond > RESOLVER_MAX_ADDRS - nfirst) nsecond = RESOLVER_MAX_ADDRS - nfirst;
    for (unsigned pass = 0; pass < 2; pass++) {
        int v6 = pass == 0 ? v6_first : !v6_first;
        unsigned count = pass == 0 ? nfirst : nsecond;
        for (unsigned i = 0; i < count; i++) {
            if (v6) resolver_put(out, &a->a6[i], sizeof(a->a6[i]), port);
            else resolver_put(out, &a->a4[i], sizeof(a->a4[i]), port);
        }
    }
    return out->n ? RESOLVER_OK : RESOLVER_NOTFOUND;
}

/* ---- cache: hash table + LRU list, bounded by cap ---- */

static size_t resolver_cache_hash(const struct resolver_cache *c, const char *name, int cls)
{
    uint64_t h = 14695981039346656037u ^ (uint64_t)cls;           /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return (size_t)(h ^ (h >> 29)) & c->mask;
}

static int resolver_cache_init(struct resolver_cache *c, unsigned cap)
{
    size_t nb = 8;
    memset(c, 0, sizeof(*c));
    if (!cap) return 0;
    c->cap = cap > RESOLVER_CACHE_MAX ? RESOLVER_CACHE_MAX : cap;
    while (nb < c->cap) nb *= 2;
    /* An array of list heads. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if (!c->buckets) return -1;
    c->mask = nb - 1;
    return 0;
}

static void resolver_cache_remove(struct resolver_cache *c, struct resolver_cache_entry *e)
{
    struct resolver_cache_entry **pp = &c->buckets[resolver_cache_hash(c, e->name, e->cls)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->newer) e->newer->older = e->older; else c->newest = e->older;
    if (e->older) e->older->newer = e->newer; else c->oldest = e->newer;
    c->len--;
    free(e);
}

static void resolver_cache_touch(struct resolver_cache *c, struct resolver_cache_entry *e)
{
    if (c->newest == e) return;
    if (e->newer) {                         /* linked (and not the newest): unlink */
        e->newer->older = e->older;
        if (e->older) e->older->newer = e->newer; else c->oldest = e->newer;
    }
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest) c->newest->newer = e; else c->oldest = e;
    c->newest = e;
}

/* Returns the live entry for (name, cls) or NULL; drops it if expired. */
static const struct resolver_answer *resolver_cache_get(struct resolver_cache *c, const char *name,
                                                        int cls, uint64_t now)
{
    if (!c->cap) return NULL;
    struct resolver_cache_entry *e = c->buckets[resolver_cache_hash(c, name, cls)];
    while (e && (e->cls != cls || strcmp(e->name, name) != 0)) e = e->hnext;
    if (!e) return NULL;
    if (e->expires_ms <= now) {
        resolver_cache_remove(c, e);
        return NULL;
    }
    resolver_cache_touch(c, e);
    e->ans.ttl = (unsigned)((e->expires_ms - now + 999u) / 1000u);
    return &e->ans;
}

/* Stores (or replaces) an answer; out of memory simply means "not cached". */
static void resolver_cache_put(struct resolver_cache *c, const char *name, int cls,
                               const struct resolver_answer *a, unsigned ttl_s, uint64_t now)
{
    if (!c->cap || !ttl_s) return;
    if (resolver_cache_get(c, name, cls, now))
        resolver_cache_remove(c, c->newest);            /* get() made it the newest */
    if (c->len == c->cap) resolver_cache_remove(c, c->oldest);
    size_t len = strlen(name);
    struct resolver_cache_entry *e = calloc(1, sizeof(*e) + len + 1);
    if (!e) return;
    memcpy(e->name, name, len + 1);
    e->cls = cls;
    e->ans = *a;
    e->expires_ms = now + (uint64_t)ttl_s * 1000u;
    size_t b = resolver_cache_hash(c, name, cls);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    c->len++;
    resolver_cache_touch(c, e);
}

static void resolver_cache_free(struct resolver_cache *c)
{
    for (struct resolver_cache_entry *e = c->oldest, *newer; e; e = newer) {
        newer = e->newer;
        free(e);
    }
    free(c->buckets);
    memset(c, 0, sizeof(*c));
}

/* ---- c-ares sockets and timer ---- */

static void resolver_ares_timer_cb(struct loop *l, struct loop_timer *t);

/* Keeps ares_timer at c-ares' next timeout; call after every c-ares step. */
static void resolver_rearm(struct resolver *r)
{
    struct timeval tv;
    if (r->destroying || !ares_timeout(r->ch, NULL, &tv)) {
        loop_timer_cancel(r->loop, &r->ares_timer);
        return;
    }
    /* Round up: firing a hair early would only make c-ares do nothing and
     * ask again for the same sub-millisecond remainder. */
    uint64_t ms = (uint64_t)tv.tv_sec * 1000u + ((uint64_t)tv.tv_usec + 999u) / 1000u;
    r->arming = 1;
    loop_timer_arm(r->loop, &r->ares_timer, clock_now_ms() + ms);
    r->arming = 0;
}

static void resolver_ares_timer_cb(struct loop *l, struct loop_timer *t)
{
    struct resolver *r = t->owner;
    (void)l;
    /* loop_timer_arm() runs the callback at once when it cannot grow its
     * heap; recursing into c-ares from there could go on forever. The
     * per-query deadlines still guarantee every callback. */
    if (r->arming) return;
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    resolver_rearm(r);
}

static void resolver_sock_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct resolver_sock *s = io->owner;
    struct resolver *r = s->r;
    int fd = io->fd, err = (events & (EPOLLERR | EPOLLHUP)) != 0;
    uint32_t want = io->want ? io->want : LOOP_READ;
    ares_socket_t rfd = (events & EPOLLIN) || (err && (want & LOOP_READ)) ? fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = (events & EPOLLOUT) || (err && (want & LOOP_WRITE)) ? fd : ARES_SOCKET_BAD;
    (void)l;
    /* c-ares may close this socket (and open another, maybe with the same fd
     * number) from in here: resolver_sock_state_cb then detaches `s` and
     * defers its free, so `s` and `io` are not touched after this call. */
    ares_process_fd(r->ch, rfd, wfd);
    resolver_rearm(r);
}

static void resolver_sock_drop(struct resolver *r, struct resolver_sock **pp)
{
    struct resolver_sock *s = *pp;
    *pp = s->next;
    loop_io_del(r->loop, &s->io);
    /* The current epoll batch may still hold an event for s. */
    loop_defer_free(r->loop, s, free);
}

/* c-ares' ARES_OPT_SOCK_STATE_CB: (fd, 0, 0) comes before c-ares closes fd.
 * May be called from inside ares_process_fd, ares_getaddrinfo and
 * ares_destroy. A failure to watch a socket is not reported to c-ares: the
 * queries using it end by their deadline. */
static void resolver_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    struct resolver_sock **pp = &r->socks;
    uint32_t want = (readable ? LOOP_READ : 0) | (writable ? LOOP_WRITE : 0);

    while (*pp && (*pp)->io.fd != fd) pp = &(*pp)->next;
    if (*pp && want) {
        (void)loop_io_want(r->loop, &(*pp)->io, want);
    } else if (*pp) {
        resolver_sock_drop(r, pp);
    } else if (want) {
        struct resolver_sock *s = calloc(1, sizeof(*s));
        if (!s) return;
        s->r = r;
        if (loop_io_add(r->loop, &s->io, fd, want, resolver_sock_cb, s) < 0) {
            free(s);
            return;
        }
        s->next = r->socks;
        r->socks = s;
    }
}

/* ---- queries ---- */

/* Frees q once neither the user nor c-ares holds it. */
static void resolver_query_release(struct resolver_query *q)
{
    struct resolver *r = q->r;
    if (q->cb || q->ares_busy) return;
    loop_timer_cancel(r->loop, &q->timer);
    if (q->prev) q->prev->next = q->next; else r->queries = q->next;
    if (q->next) q->next->prev = q->prev;
    r->nqueries--;
    free(q->srv);
    free(q);
}

/* The user side lets go (answered, cancelled, resolver freed). */
static void resolver_query_let_go(struct resolver_query *q)
{
    q->cb = NULL;
    if (q->ares_busy) q->r->ndetached++;
    resolver_query_release(q);
}

enum { ANSWER_DNS, ANSWER_LITERAL, ANSWER_CACHE };

/* Counts a delivered answer (literals are no lookup). */
static void resolver_count(const struct resolver_query *q, int status)
{
    static const enum metrics_dns by_status[] = { MDNS_OK, MDNS_NOTFOUND, MDNS_TIMEOUT, MDNS_FAILED, MDNS_BUSY };
    if (q->answered_by == ANSWER_LITERAL) return;
    if (q->answered_by == ANSWER_CACHE) {
        metrics_dns_lookup(MDNS_CACHED, 0);
        return;
    }
    unsigned i = status <= 0 && status >= RESOLVER_BUSY ? (unsigned)-status : 3;
    uint64_t now = clock_now_us();
    metrics_dns_lookup(by_status[i], q->start_us && now > q->start_us ? now - q->start_us : 0);
}

/* An SRV query's answer (or RESOLVER_TIMEOUT), from its timer. */
static void resolver_srv_deliver(struct resolver_query *q)
{
    static const struct resolved_srv none;
    resolver_srv_cb *cb = q->scb;
    void *arg = q->arg;
    int status = q->done ? q->ans.status : RESOLVER_TIMEOUT;
    struct resolved_srv *res = q->srv;
    q->srv = NULL;                        /* ours now: q may be freed by let_go */
    resolver_count(q, status);
    q->scb = NULL;
    resolver_query_let_go(q);
    cb(arg, status, status == RESOLVER_OK && res ? res : &none);
    free(res);
}

/* The query's one timer: first the deadline, then re-armed at "now" when
 * the answer is known. Delivers the answer or RESOLVER_TIMEOUT. */
static void resolver_query_timer_cb(struct loop *l, struct loop_timer *t)
{
    struct resolver_query *q = t->owner;
    struct resolved res;
    (void)l;
    /* loop_timer_arm() fires at once when it cannot grow its heap; inside
     * resolver_lookup that would break the "never from inside lookup" rule,
     * so resolver_lookup turns it into an ENOMEM failure instead. */
    if (q->in_lookup) {
        q->fired_in_lookup = 1;
        return;
    }
    if (q->scb) {
        resolver_srv_deliver(q);
        return;
    }
    resolver_cb *cb = q->cb;
    void *arg = q->arg;
    if (!q->done) q->ans = (struct resolver_answer){ .status = RESOLVER_TIMEOUT };
    int status = resolver_order(&q->ans, q->fam, q->port, &res);
    resolver_count(q, status);
    resolver_query_let_go(q);
    /* Last: the callback may cancel other queries or free the resolver. */
    cb(arg, status, &res);
}

/* c-ares' completion callback, exactly once per ares_getaddrinfo(): from
 * inside ares_getaddrinfo (hosts file, bad name), ares_process_fd, or
 * ares_destroy (ARES_EDESTRUCTION). Never calls user code. */
static void resolver_ares_cb(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct resolver_query *q = arg;
    struct resolver *r = q->r;
    struct resolver_answer a = { .status = resolver_map_status(status) };
    unsigned ttl = resolver_answer_from_ares(&a, ai);
    (void)timeouts;
    a.ttl = ttl;

    ares_freeaddrinfo(ai);
    q->ares_busy = 0;
    r->nbusy--;
    if (!q->cb) r->ndetached--;
    if (!r->destroying) {
        if (a.status == RESOLVER_OK && !a.n4 && !a.n6) a.status = RESOLVER_NOTFOUND;
        if (a.status == RESOLVER_NOTFOUND)     /* a bad name is not worth a slot */
            ttl = status == ARES_EBADNAME ? 0 : RESOLVER_NEG_TTL_S;
        if (a.status == RESOLVER_OK || a.status == RESOLVER_NOTFOUND)
            resolver_cache_put(&r->cache, q->name, resolver_family_class(q->fam), &a, ttl,
                               clock_now_ms());
    }
    if (!q->cb) {                           /* cancelled or already timed out */
        resolver_query_release(q);
        return;
    }
    q->ans = a;
    q->done = 1;
    /* The timer is armed (deadline), so re-arming cannot allocate. */
    loop_timer_arm(r->loop, &q->timer, loop_now(r->loop));
}

/* Answers without DNS when possible (literal, cache, impossible name). */
static int resolver_answer_now(struct resolver *r, struct resolver_query *q)
{
    size_t len = strlen(q->name);
    const struct resolver_answer *hit;

    if (resolver_answer_literal(&q->ans, q->name)) {
        q->answered_by = ANSWER_LITERAL;
        return 1;
    }
    if (len == 0 || len > RESOLVER_NAME_MAX) {
        q->ans.status = RESOLVER_NOTFOUND;
        return 1;
    }
    hit = resolver_cache_get(&r->cache, q->name, resolver_family_class(q->fam), clock_now_ms());
    if (!hit) return 0;
    q->ans = *hit;
    q->answered_by = ANSWER_CACHE;
    return 1;
}

static struct resolver_query *resolver_query_new(struct resolver *r, const char *host)
{
    size_t len = strlen(host);
    struct resolver_query *q = calloc(1, sizeof(*q) + len + 1);
    if (!q) return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        q->name[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    q->r = r;
    loop_timer_init(&q->timer, resolver_query_timer_cb, q);
    q->next = r->queries;
    if (r->queries) r->queries->prev = q;
    r->queries = q;
    r->nqueries++;
    return q;
}

struct resolver_query *resolver_lookup(struct resolver *r, const char *host, uint16_t port,
                                       enum resolver_family fam, resolver_cb *cb, void *arg)
{
    struct resolver_query *q = resolver_query_new(r, host);
    if (!q) return NULL;
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    q->fam = fam;
    q->in_lookup = 1;
    q->done = resolver_answer_now(r, q);
    if (!q->done && (r->nbusy >= r->max_inflight || r->ndetached >= r->max_detached)) {
        q->ans.status = RESOLVER_BUSY;      /* delivered by the timer like any answer */
        q->done = 1;
        r->refused++;
    }
    uint64_t when = q->done ? loop_now(r->loop) : clock_now_ms() + r->timeout_ms;
    loop_timer_arm(r->loop, &q->timer, when);
    if (!q->fired_in_lookup && !q->done) {
        int cls = resolver_family_class(fam);
        struct ares_addrinfo_hints hints = {
            .ai_flags = ARES_AI_NOSORT,     /* we order; the sort opens sockets */
            .ai_family = cls == RESOLVER_CLS_V4 ? AF_INET : cls == RESOLVER_CLS_V6 ? AF_INET6 : AF_UNSPEC,
            .ai_socktype = SOCK_STREAM,
        };
        q->ares_busy = 1;
        q->start_us = clock_now_us();
        r->nbusy++;
        ares_getaddrinfo(r->ch, q->name, NULL, &hints, resolver_ares_cb, q);
        resolver_rearm(r);
    }
    q->in_lookup = 0;
    if (q->fired_in_lookup) {               /* timer heap out of memory */
        resolver_query_let_go(q);
        errno = ENOMEM;
        return NULL;
    }
    return q;
}

/* Marks an SRV query as held by its user (q->cb non-NULL); never called:
 * SRV answers go to q->scb. */
static void resolver_srv_held(void *arg, int status, const struct resolved *res)
{
    (void)arg;
    (void)status;
    (void)res;
}

/* c-ares' callback for ares_search, exactly once (like resolver_ares_cb). */
static void resolver_srv_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct resolver_query *q = arg;
    struct resolver *r = q->r;
    (void)timeouts;
    q->ares_busy = 0;
    r->nbusy--;
    if (!q->cb) {
        r->ndetached--;
        resolver_query_release(q);
        return;
    }
    if (status == ARES_SUCCESS || (abuf && alen > 0 && status == ARES_ENOTFOUND))
        q->ans.status = resolver_srv_parse(abuf, alen > 0 ? (size_t)alen : 0, q->srv);
    else
        q->ans.status = resolver_map_status(status);
    q->done = 1;
    loop_timer_arm(r->loop, &q->timer, loop_now(r->loop));
}

struct resolver_query *resolver_srv(struct resolver *r, const char *name, resolver_srv_cb *cb, void *arg)
{
    struct resolver_query *q = resolver_query_new(r, name);
    if (!q) return NULL;
    if (!(q->srv = malloc(sizeof(*q->srv)))) {
        q->cb = NULL;
        resolver_query_release(q);
        errno = ENOMEM;
        return NULL;
    }
    q->cb = resolver_srv_held;
    q->scb = cb;
    q->arg = arg;
    q->in_lookup = 1;
    size_t len = strlen(q->name);
    if (len == 0 || len > RESOLVER_NAME_MAX) {
        q->ans.status = RESOLVER_NOTFOUND;
        q->done = 1;
        q->answered_by = ANSWER_LITERAL;      /* no lookup made: not counted */
    } else if (r->nbusy >= r->max_inflight || r->ndetached >= r->max_detached) {
        q->ans.status = RESOLVER_BUSY;
        q->done = 1;
        r->refused++;
    }
    loop_timer_arm(r->loop, &q->timer, q->done ? loop_now(r->loop) : clock_now_ms() + r->timeout_ms);
    if (!q->fired_in_lookup && !q->done) {
        q->ares_busy = 1;
        q->start_us = clock_now_us();
        r->nbusy++;
        ares_search(r->ch, q->name, 1 /* C_IN */, 33 /* T_SRV */, resolver_srv_ares_cb, q);
        resolver_rearm(r);
    }
    q->in_lookup = 0;
    if (q->fired_in_lookup) {
        q->scb = NULL;
        resolver_query_let_go(q);
        errno = ENOMEM;
        return NULL;
    }
    return q;
}

void resolver_cancel(struct resolver_query *q)
{
    if (!q || !q->cb) return;
    loop_timer_cancel(q->r->loop, &q->timer);
    resolver_query_let_go(q);
}

/* ---- setup ---- */

static int resolver_parse_port(const char *s, int *port)
{
    unsigned long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535) return -1;
    }
    if (v == 0) return -1;
    *port = (int)v;
    return 0;
}

/* One "IP", "IP:PORT", "[v6]", "[v6]:PORT" or bare "v6" into `n`. */
static int resolver_parse_server(char *s, struct ares_addr_port_node *n)
{
    char *host = s, *port = NULL, *colon = strchr(s, ':');
    int p = 53, bracketed = *s == '[';

    if (bracketed) {
        char *end = strchr(s, ']');
        if (!end || (end[1] && end[1] != ':')) return -1;
        *end = '\0';
        host = s + 1;
        port = end[1] ? end + 2 : NULL;
    } else if (colon && !strchr(colon + 1, ':')) {  /* exactly one colon: v4:port */
        *colon = '\0';
        port = colon + 1;
    }
    if (port && resolver_parse_port(port, &p) < 0) return -1;
    memset(n, 0, sizeof(*n));
    if (!bracketed && inet_pton(AF_INET, host, &n->addr.addr4) == 1) n->family = AF_INET;
    else if (inet_pton(AF_INET6, host, &n->addr.addr6) == 1) n->family = AF_INET6;
    else return -1;
    n->udp_port = n->tcp_port = p;
    return 0;
}

/* Parses "a,b,c" into nodes[] (linked). Returns the count, or -1 with err.
 * Our own parser rather than ares_set_servers_ports_csv(): c-ares 1.18
 * accepts "" (no servers at all), port 0 and port 70000. */
static int resolver_parse_servers(const char *list, struct ares_addr_port_node *nodes,
                                  char *err, size_t errlen)
{
    int n = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[INET6_ADDRSTRLEN + 10];
        if (n == RESOLVER_MAX_SERVERS) {
            snprintf(err, errlen, "too many DNS servers in '%s' (max %d)", list, RESOLVER_MAX_SERVERS);
            return -1;
        }
        if (len < sizeof(buf)) {
            memcpy(buf, p, len);
            buf[len] = '\0';
        }
        if (len >= sizeof(buf) || resolver_parse_server(buf, &nodes[n]) < 0) {
            snprintf(err, errlen, "bad DNS server '%.*s' in '%s' (want IP[:PORT] or [IPv6]:PORT)",
                     (int)(len > 64 ? 64 : len), p, list);
            return -1;
        }
        if (n) nodes[n - 1].next = &nodes[n];
        n++;
        if (!end) return n;
        p = end + 1;
    }
}

/* Opens the channel. The per-try timeout is sized so that c-ares, trying
 * every server RESOLVER_TRIES times (t, then 2t), gives up near timeout_ms;
 * our own per-query deadline is what guarantees it. */
static int resolver_channel_open(struct resolver *r, int nservers, char *err, size_t errlen)
{
    struct ares_options ao;
    int per_try = (int)(r->timeout_ms / (3u * (unsigned)nservers));
    int rc;

    memset(&ao, 0, sizeof(ao));
    ao.timeout = per_try > 0 ? per_try : 1;
    ao.tries = RESOLVER_TRIES;
    ao.sock_state_cb = resolver_sock_state_cb;
    ao.sock_state_cb_data = r;
    rc = ares_init_options(&r->ch, &ao, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares init failed: %s", ares_strerror(rc));
        return -1;
    }
    return 0;
}

static int resolver_count_servers(ares_channel ch)
{
    struct ares_addr_port_node *list = NULL;
    int n = 0;
    if (ares_get_servers_ports(ch, &list) != ARES_SUCCESS) return 1;
    for (struct ares_addr_port_node *p = list; p; p = p->next) n++;
    ares_free_data(list);
    return n ? n : 1;
}

/* System servers: their count is only known after reading resolv.conf, so
 * open once, count, and reopen if the per-try timeout should be shorter. */
static int resolver_channel_setup(struct resolver *r, const char *servers, char *err, size_t errlen)
{
    struct ares_addr_port_node nodes[RESOLVER_MAX_SERVERS];
    int n = 1, rc;

    if (servers && (n = resolver_parse_servers(servers, nodes, err, errlen)) < 0) return -1;
    if (resolver_channel_open(r, n, err, errlen) < 0) return -1;
    if (servers) {
        rc = ares_set_servers_ports(r->ch, nodes);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "c-ares rejected DNS servers '%s': %s", servers, ares_strerror(rc));
            return -1;
        }
        return 0;
    }
    n = resolver_count_servers(r->ch);
    if (n == 1) return 0;
    ares_destroy(r->ch);
    r->ch = NULL;
    return resolver_channel_open(r, n, err, errlen);
}

struct resolver *resolver_new(struct loop *l, const struct resolver_opts *o,
                              char *err, size_t errlen)
{
    struct resolver_opts defaults = { 0 };
    struct resolver *r;

    if (!o) o = &defaults;
    pthread_once(&resolver_once, resolver_library_init);
    if (ares_library_initialized() != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares library initialisation failed");
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "resolver: out of memory");
        return NULL;
    }
    r->loop = l;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : RESOLVER_DEFAULT_TIMEOUT_MS;
    r->max_inflight = o->max_inflight ? o->max_inflight : RESOLVER_DEFAULT_MAX_INFLIGHT;
    r->max_detached = o->max_detached ? o->max_detached : r->max_inflight / 4;
    if (r->max_detached == 0) r->max_detached = 1;
    loop_timer_init(&r->ares_timer, resolver_ares_timer_cb, r);
    if (resolver_cache_init(&r->cache, o->cache_entries) < 0) {
        snprintf(err, errlen, "resolver: out of memory for %u cache entries", o->cache_entries);
        free(r);
        return NULL;
    }
    if (resolver_channel_setup(r, o->servers, err, errlen) < 0) {
        resolver_free(r);
        return NULL;
    }
    return r;
}

void resolver_free(struct resolver *r)
{
    if (!r) return;
    r->destroying = 1;
    loop_timer_cancel(r->loop, &r->ares_timer);
    /* Let go of the user side of every query; those c-ares does not hold
     * are freed now, the others when ares_destroy() calls them back with
     * ARES_EDESTRUCTION. */
    for (struct resolver_query *q = r->queries, *next; q; q = next) {
        next = q->next;
        loop_timer_cancel(r->loop, &q->timer);
        resolver_query_let_go(q);
    }
    if (r->ch) ares_destroy(r->ch);         /* closes sockets via the state callback */
    /* c-ares is gone; whatever it did not hand back is ours to free. */
    while (r->queries) {
        /* release() unlinks the head before freeing it; the analyzer loses
         * that across loop_timer_cancel(). NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        r->queries->ares_busy = 0;
        resolver_query_release(r->queries);
    }
    while (r->socks) resolver_sock_drop(r, &r->socks);
    resolver_cache_free(&r->cache);
    free(r);
}
