/* discover.c - see discover.h. */
#include "upstream/discover.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "obs/log.h"
#include "resolver/resolver.h"

/* ---- the shared table ---- */

void disc_shared_init(struct disc_shared *sh)
{
    memset(sh, 0, sizeof(*sh));
    pthread_mutex_init(&sh->mu, NULL);
}

void disc_shared_destroy(struct disc_shared *sh)
{
    pthread_mutex_destroy(&sh->mu);
}

int disc_shared_sync(struct disc_shared *sh, unsigned *seen, struct disc_set *out)
{
    unsigned gen = __atomic_load_n(&sh->gen, __ATOMIC_ACQUIRE);
    if (gen == *seen) return 0;
    pthread_mutex_lock(&sh->mu);
    *out = sh->set;
    *seen = sh->gen;
    pthread_mutex_unlock(&sh->mu);
    return 1;
}

size_t disc_shared_count(struct disc_shared *sh)
{
    pthread_mutex_lock(&sh->mu);
    size_t n = sh->set.n;
    pthread_mutex_unlock(&sh->mu);
    return n;
}

int disc_shared_slot(struct disc_shared *sh, size_t i, char *name, size_t namelen)
{
    int active = 0;
    name[0] = '\0';
    pthread_mutex_lock(&sh->mu);
    if (i < sh->set.n && sh->set.slot[i].state != DISC_EMPTY) {
        disc_server_name(&sh->set.slot[i].s, name, namelen);
        active = sh->set.slot[i].state == DISC_ACTIVE;
    }
    pthread_mutex_unlock(&sh->mu);
    return active;
}

/* ---- the discoverer ---- */

struct dspec;

/* One SRV record being resolved to an address. */
struct dtarget {
    struct dspec *sp;
    struct resolver_query *q;
    struct disc_srv rec;          /* addr "" until resolved */
    char target[256];
};

struct dspec {
    struct discoverer *d;
    enum discover_kind kind;
    char host[256];
    uint16_t port;
    int weight, backup;
    unsigned maxconn, idx;
    struct resolver_query *q;
    struct dtarget t[RESOLVER_MAX_SRV];
    size_t nt, tpending;
    unsigned ttl;                 /* this round's smallest TTL */
    struct disc_server last[DISC_MAX], got[DISC_MAX];
    size_t nlast, ngot;
    int have, failing;
    uint64_t next;                /* when to look again (ms) */
};

struct discoverer {
    struct loop *loop;
    struct resolver *r;
    struct disc_shared *sh;
    discover_changed_fn *changed;
    void *arg;
    char name[64];
    unsigned min_ms, max_ms;
    enum resolver_family fam;
    struct loop_timer timer;
    size_t pending;               /* specs of this round still looking */
    unsigned dropped_logged;
    struct disc_set set;          /* the master copy */
    struct disc_server want[DISC_MAX];
    size_t n;
    struct dspec sp[];
};

static void spec_label(const struct dspec *sp, char *out, size_t len)
{
    char host[256];
    log_sanitize(host, sizeof(host), sp->host);
    if (sp->kind == DISCOVER_SRV) snprintf(out, len, "SRV %s", host);
    else snprintf(out, len, "%s:%u (all addresses)", host, sp->port);
}

static void log_change(const struct discoverer *d, const struct disc_slot *s, int added)
{
    char name[300];
    if (!log_enabled(LOG_INFO)) return;
    disc_server_name(&s->s, name, sizeof(name));
    if (added)
        log_msg(LOG_INFO, "upstream %s/%s added by DNS (weight %d%s)", d->name, name, s->s.weight,
                s->s.backup ? ", backup" : "");
    else
        log_msg(LOG_INFO, "upstream %s/%s removed by DNS: draining (no new connections)", d->name, name);
}

/* Merges every spec's last known servers and publishes what changed. */
static void publish(struct discoverer *d)
{
    size_t n = 0;
    struct disc_diff diff;
    for (size_t i = 0; i < d->n; i++) {
        const struct dspec *sp = &d->sp[i];
        for (size_t j = 0; j < sp->nlast && n < DISC_MAX; j++) d->want[n++] = sp->last[j];
    }
    disc_apply(&d->set, d->want, n, &diff);
    if (diff.dropped && diff.dropped != d->dropped_logged)
        log_warn("upstream %s: DNS names %u servers more than the %d a group holds: they are not used", d->name,
                 diff.dropped, DISC_MAX);
    d->dropped_logged = diff.dropped;
    if (!diff.changed) return;
    pthread_mutex_lock(&d->sh->mu);
    d->sh->set = d->set;
    __atomic_add_fetch(&d->sh->gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&d->sh->mu);
    for (size_t i = 0; i < d->set.n; i++) {
        if (!(diff.changed & (1ULL << i))) continue;
        const struct disc_slot *s = &d->set.slot[i];
        log_change(d, s, s->state == DISC_ACTIVE);
        if (d->changed) d->changed(d->arg, i, s);
    }
}

static void round_end(struct discoverer *d)
{
    uint64_t now = loop_now(d->loop), next = now + d->max_ms;
    publish(d);
    for (size_t i = 0; i < d->n; i++)
        if (d->sp[i].kind != DISCOVER_STATIC && d->sp[i].next < next) next = d->sp[i].next;
    loop_timer_arm(d->loop, &d->timer, next);
}

/* A spec's lookups are over: status RESOLVER_OK with sp->got, or not. */
static void spec_done(struct dspec *sp, int status)
{
    struct discoverer *d = sp->d;
    char label[320];
    uint64_t now = loop_now(d->loop);
    if (status == RESOLVER_OK && sp->ngot == 0) status = RESOLVER_NOTFOUND;
    if (status == RESOLVER_OK) {
        memcpy(sp->last, sp->got, sp->ngot * sizeof(sp->got[0]));
        sp->nlast = sp->ngot;
        sp->have = 1;
        if (sp->failing) {
            spec_label(sp, label, sizeof(label));
            log_info("upstream %s: %s answers again (%zu servers)", d->name, label, sp->nlast);
        }
        sp->failing = 0;
        sp->next = now + disc_refresh_ms(sp->ttl, d->min_ms, d->max_ms);
    } else {
        if (!sp->failing) {
            spec_label(sp, label, sizeof(label));
            log_warn("upstream %s: %s: %s; keeping the last %zu servers known", d->name, label,
                     status == RESOLVER_NOTFOUND ? "no servers in the answer" : resolver_strerror(status),
                     sp->nlast);
        }
        sp->failing = 1;
        sp->next = now + d->min_ms;
    }
    if (--d->pending == 0) round_end(d);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
    out[0] = '\0';
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, out, (socklen_t)len);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, out, (socklen_t)len);
}

static void take_ttl(struct dspec *sp, unsigned ttl)
{
    if (ttl && (sp->ttl == 0 || ttl < sp->ttl)) sp->ttl = ttl;
}

/* `resolve all`: every address is a server. */
static void all_cb(void *arg, int status, const struct resolved *res)
{
    struct dspec *sp = arg;
    sp->q = NULL;
    sp->ngot = 0;
    for (size_t i = 0; status == RESOLVER_OK && i < res->n && sp->ngot < DISC_MAX; i++) {
        struct disc_server *s = &sp->got[sp->ngot];
        memset(s, 0, sizeof(*s));
        addr_text(&res->addr[i], s->host, sizeof(s->host));
        if (!s->host[0]) continue;
        s->port = sp->port;
        s->weight = sp->weight;
        s->backup = (uint8_t)sp->backup;
        s->maxconn = sp->maxconn;
        s->spec = sp->idx;
        sp->ngot++;
    }
    if (status == RESOLVER_OK) take_ttl(sp, res->ttl);
    spec_done(sp, status);
}

/* Every SRV target has an address or has failed. */
static void srv_targets_done(struct dspec *sp)
{
    struct disc_srv recs[RESOLVER_MAX_SRV];
    size_t n = 0;
    for (size_t i = 0; i < sp->nt; i++)
        if (sp->t[i].rec.addr[0]) recs[n++] = sp->t[i].rec;
    sp->ngot = 0;
    (void)disc_from_srv(recs, n, sp->backup, sp->maxconn, sp->idx, sp->got, &sp->ngot, DISC_MAX);
    spec_done(sp, RESOLVER_OK);
}

static void target_cb(void *arg, int status, const struct resolved *res)
{
    struct dtarget *t = arg;
    struct dspec *sp = t->sp;
    t->q = NULL;
    if (status == RESOLVER_OK && res->n) {
        addr_text(&res->addr[0], t->rec.addr, sizeof(t->rec.addr));
        take_ttl(sp, res->ttl);
    } else if (log_enabled(LOG_DEBUG)) {
        char host[256];
        log_sanitize(host, sizeof(host), t->target);
        log_debug("upstream %s: SRV target %s: %s", sp->d->name, host, resolver_strerror(status));
    }
    if (--sp->tpending == 0) srv_targets_done(sp);
}

static void srv_cb(void *arg, int status, const struct resolved_srv *res)
{
    struct dspec *sp = arg;
    struct discoverer *d = sp->d;
    sp->q = NULL;
    if (status != RESOLVER_OK) {
        spec_done(sp, status);
        return;
    }
    take_ttl(sp, res->ttl);
    sp->nt = res->n;
    sp->tpending = res->n + 1;         /* + 1: none completes before all started */
    for (size_t i = 0; i < res->n; i++) {
        struct dtarget *t = &sp->t[i];
        memset(&t->rec, 0, sizeof(t->rec));
        t->sp = sp;
        t->rec.port = res->rec[i].port;
        t->rec.priority = res->rec[i].priority;
        t->rec.weight = res->rec[i].weight;
        memcpy(t->target, res->rec[i].target, sizeof(t->target));
        t->q = resolver_lookup(d->r, t->target, t->rec.port, d->fam, target_cb, t);
        if (!t->q) sp->tpending--;     /* out of memory: this target is left out */
    }
    if (--sp->tpending == 0) srv_targets_done(sp);
}

static void round_start(struct loop *l, struct loop_timer *timer)
{
    struct discoverer *d = timer->owner;
    uint64_t now = loop_now(l);
    (void)l;
    d->pending = 1;                    /* held until every lookup started */
    for (size_t i = 0; i < d->n; i++) {
        struct dspec *sp = &d->sp[i];
        if (sp->kind == DISCOVER_STATIC || sp->next > now) continue;
        sp->ttl = 0;
        sp->ngot = 0;
        d->pending++;
        if (sp->kind == DISCOVER_SRV) sp->q = resolver_srv(d->r, sp->host, srv_cb, sp);
        else sp->q = resolver_lookup(d->r, sp->host, sp->port, d->fam, all_cb, sp);
        if (!sp->q) spec_done(sp, RESOLVER_FAILED);
    }
    if (--d->pending == 0) round_end(d);
}

struct discoverer *discover_start(struct loop *l, struct resolver *r, const char *name,
                                  const struct discover_spec *specs, size_t n, struct disc_shared *sh,
                                  const struct discover_opts *o, discover_changed_fn *changed, void *arg,
                                  char *err, size_t errlen)
{
    if (n == 0 || n > DISC_MAX) {
        snprintf(err, errlen, "discovery: %zu servers (1 to %d)", n, DISC_MAX);
        return NULL;
    }
    struct discoverer *d = calloc(1, sizeof(*d) + n * sizeof(d->sp[0]));
    if (!d) {
        snprintf(err, errlen, "discovery: out of memory");
        return NULL;
    }
    d->loop = l;
    d->r = r;
    d->sh = sh;
    d->changed = changed;
    d->arg = arg;
    d->n = n;
    d->min_ms = o->refresh_min_ms ? o->refresh_min_ms : 1000;
    d->max_ms = o->refresh_max_ms >= d->min_ms ? o->refresh_max_ms : d->min_ms;
    d->fam = o->prefer_ipv6 ? RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4;
    log_sanitize(d->name, sizeof(d->name), name ? name : "-");
    for (size_t i = 0; i < n; i++) {
        struct dspec *sp = &d->sp[i];
        sp->d = d;
        sp->idx = (unsigned)i;
        sp->kind = specs[i].kind;
        snprintf(sp->host, sizeof(sp->host), "%s", specs[i].host);
        sp->port = specs[i].port;
        sp->weight = specs[i].weight > 0 ? specs[i].weight : 1;
        sp->backup = specs[i].backup;
        sp->maxconn = specs[i].maxconn;
        if (sp->kind != DISCOVER_STATIC) continue;
        struct disc_server *s = &sp->last[0];
        memcpy(s->host, sp->host, sizeof(s->host));
        s->port = sp->port;
        s->weight = sp->weight;
        s->backup = (uint8_t)sp->backup;
        s->maxconn = sp->maxconn;
        s->spec = sp->idx;
        sp->nlast = 1;
        sp->have = 1;
    }
    loop_timer_init(&d->timer, round_start, d);
    loop_timer_arm(l, &d->timer, clock_now_ms());
    return d;
}

void discover_stop(struct discoverer *d)
{
    if (!d) return;
    loop_timer_cancel(d->loop, &d->timer);
    for (size_t i = 0; i < d->n; i++) {
        struct dspec *sp = &d->sp[i];
        resolver_cancel(sp->q);
        sp->q = NULL;
        for (size_t j = 0; j < sp->nt; j++) {
            resolver_cancel(sp->t[j].q);
            sp->t[j].q = NULL;
        }
    }
    loop_defer_free(d->loop, d, free);
}
