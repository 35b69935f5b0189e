/* metrics.c - see metrics.h. */
#include "obs/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "obs/log.h"
#include "obs/syslog.h"

/* 5 ms .. 1 h: short requests to long tunnels. */
const struct metrics_buckets metrics_duration_ms = {
    12, { 5, 25, 100, 250, 1000, 2500, 10000, 30000, 60000, 300000, 1800000, 3600000 }
};
/* 100 us .. 10 s: loopback connects to a slow DNS server's timeout. */
const struct metrics_buckets metrics_latency_us = {
    12, { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 500000, 2000000, 10000000 }
};

#define USERS_MAX 32
#define USER_NAME_MAX 64

struct user_ctr {
    char name[USER_NAME_MAX];
    uint64_t sessions, up, down;
};

/* One worker's users of one listener: names appended by that worker,
 * published by the release store of n. */
struct user_table {
    unsigned n;
    uint64_t overflow;                 /* sessions of users past USERS_MAX */
    struct user_ctr u[USERS_MAX];
};

/* One listener on one worker. Aligned: no two workers share a line. */
struct lblock {
    uint64_t opened, closed;
    uint64_t refused[MREF_N];
    uint64_t up, down, sent_up, sent_down;
    uint64_t ends[METRICS_MAX_ENDS];
    uint64_t hsfail[METRICS_MAX_ENDS];
    struct metrics_hist duration;
    struct user_table *users;          /* --metrics-users, else NULL */
} __attribute__((aligned(64)));

/* One server of one listener on one worker. */
struct sblock {
    uint64_t opened, closed, failed;
    struct metrics_hist connect;
} __attribute__((aligned(64)));

/* Process-wide counters of one worker. */
struct gblock {
    uint64_t dns[MDNS_N];
    struct metrics_hist dns_latency;
} __attribute__((aligned(64)));

struct metrics_listener {
    struct metrics_listener *prev, *next;
    char name[128];
    const char *hs_proto;              /* atomic: the last handshake protocol seen */
    const struct metrics_server_ops *sops;
    void *sctx;
    struct lblock *lb;                 /* [nslots] */
    struct sblock *sb;                 /* [nslots][METRICS_MAX_SERVERS], on first use */
};

static struct {
    unsigned nslots;                   /* workers + 1 shared */
    int users;
    struct gblock *g;                  /* [nslots] */
    const char *end_names[METRICS_MAX_ENDS];   /* atomic pointers, static strings */
    pthread_mutex_t lock;              /* the listener list; never taken by a worker */
    struct metrics_listener *head;
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* 0: no worker slot (the shared block, atomic adds); else id + 1. */
static _Thread_local unsigned my_slot;

int metrics_init(unsigned nworkers)
{
    metrics_shutdown();
    reg.nslots = nworkers + 1;
    if (posix_memalign((void **)&reg.g, 64, reg.nslots * sizeof(*reg.g))) {
        reg.g = NULL;
        reg.nslots = 0;
        return -1;
    }
    memset(reg.g, 0, reg.nslots * sizeof(*reg.g));
    return 0;
}

void metrics_shutdown(void)
{
    free(reg.g);
    reg.g = NULL;
    reg.nslots = 0;
}

void metrics_set_users(int on)
{
    reg.users = on;
}

int metrics_users_enabled(void)
{
    return reg.users;
}

void metrics_thread_slot(int id)
{
    my_slot = id >= 0 && (unsigned)id + 1 < reg.nslots ? (unsigned)id + 1 : 0;
}

/* The calling thread's index into a [nslots] array: the shared block is
 * the last one. */
static unsigned slot(void)
{
    return my_slot ? my_slot - 1 : reg.nslots - 1;
}

/* Adds to one of the calling thread's counters: a worker owns its block;
 * other threads share the last one and add atomically. */
static void add(uint64_t *c, uint64_t v)
{
    if (my_slot) metrics_ctr_add(c, v);
    else __atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

/* ---- histograms ---- */

static unsigned bucket_of(const struct metrics_buckets *b, uint64_t v)
{
    unsigned i = 0;
    while (i < b->n && v > b->le[i]) i++;
    return i;
}

void metrics_hist_observe(struct metrics_hist *h, const struct metrics_buckets *b, uint64_t v)
{
    add(&h->bucket[bucket_of(b, v)], 1);
    add(&h->count, 1);
    add(&h->sum, v);
}

void metrics_hist_sum(struct metrics_hist *dst, const struct metrics_hist *src, const struct metrics_buckets *b)
{
    for (unsigned i = 0; i <= b->n; i++) dst->bucket[i] += metrics_ctr_get(&src->bucket[i]);
    dst->count += metrics_ctr_get(&src->count);
    dst->sum += metrics_ctr_get(&src->sum);
}

/* ---- listeners ---- */

struct metrics_listener *metrics_listener_new(const char *name)
{
    if (!reg.nslots) return NULL;
    struct metrics_listener *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    snprintf(m->name, sizeof(m->name), "%s", name);
    if (posix_memalign((void **)&m->lb, 64, reg.nslots * sizeof(*m->lb))) {
        free(m);
        return NULL;
    }
    memset(m->lb, 0, reg.nslots * sizeof(*m->lb));
    for (unsigned i = 0; reg.users && i < reg.nslots; i++) {
        if (!(m->lb[i].users = calloc(1, sizeof(*m->lb[i].users)))) {
            metrics_listener_free(m);
            return NULL;
        }
    }
    pthread_mutex_lock(&reg.lock);
    m->next = reg.head;
    if (reg.head) reg.head->prev = m;
    reg.head = m;
    pthread_mutex_unlock(&reg.lock);
    return m;
}

void metrics_listener_servers(struct metrics_listener *m, const struct metrics_server_ops *ops, void *ctx)
{
    if (!m) return;
    size_t n = (size_t)reg.nslots * METRICS_MAX_SERVERS;
    if (!m->sb && posix_memalign((void **)&m->sb, 64, n * sizeof(*m->sb))) m->sb = NULL;
    if (!m->sb) return;
    memset(m->sb, 0, n * sizeof(*m->sb));
    pthread_mutex_lock(&reg.lock);
    m->sops = ops;
    m->sctx = ctx;
    pthread_mutex_unlock(&reg.lock);
}

static void fold_into_twin(const struct metrics_listener *m);

void metrics_listener_free(struct metrics_listener *m)
{
    if (!m) return;
    pthread_mutex_lock(&reg.lock);
    fold_into_twin(m);
    if (m->prev) m->prev->next = m->next;
    else if (reg.head == m) reg.head = m->next;
    if (m->next) m->next->prev = m->prev;
    pthread_mutex_unlock(&reg.lock);
    for (unsigned i = 0; i < reg.nslots; i++) free(m->lb[i].users);
    free(m->lb);
    free(m->sb);
    free(m);
}

/* ---- hooks ---- */

void metrics_conn_opened(struct metrics_listener *m)
{
    if (m) add(&m->lb[slot()].opened, 1);
}

void metrics_refused(struct metrics_listener *m, enum metrics_refuse why)
{
    if (m && (unsigned)why < MREF_N) add(&m->lb[slot()].refused[why], 1);
}

static void count_user(struct user_table *t, const struct metrics_session_end *e)
{
    unsigned n = __atomic_load_n(&t->n, __ATOMIC_RELAXED), i;
    for (i = 0; i < n; i++)
        if (strncmp(t->u[i].name, e->user, USER_NAME_MAX - 1) == 0) break;
    if (i == n) {
        if (n == USERS_MAX) {
            add(&t->overflow, 1);
            return;
        }
        snprintf(t->u[n].name, sizeof(t->u[n].name), "%s", e->user);
        if (my_slot) __atomic_store_n(&t->n, n + 1, __ATOMIC_RELEASE);
        else return;     /* the shared block has no single writer to append names */
    }
    add(&t->u[i].sessions, 1);
    add(&t->u[i].up, e->up);
    add(&t->u[i].down, e->down);
}

void metrics_session_closed(struct metrics_listener *m, const struct metrics_session_end *e)
{
    if (!m) return;
    struct lblock *b = &m->lb[slot()];
    if (e->end < METRICS_MAX_ENDS) {
        if (!__atomic_load_n(&reg.end_names[e->end], __ATOMIC_RELAXED))
            __atomic_store_n(&reg.end_names[e->end], e->end_name, __ATOMIC_RELEASE);
        add(&b->ends[e->end], 1);
        if (e->hs_proto) {
            if (__atomic_load_n(&m->hs_proto, __ATOMIC_RELAXED) != e->hs_proto)
                __atomic_store_n(&m->hs_proto, e->hs_proto, __ATOMIC_RELEASE);
            add(&b->hsfail[e->end], 1);
        }
    }
    if (e->refuse < MREF_N) add(&b->refused[e->refuse], 1);
    add(&b->up, e->up);
    add(&b->down, e->down);
    add(&b->sent_up, e->sent_up);
    add(&b->sent_down, e->sent_down);
    metrics_hist_observe(&b->duration, &metrics_duration_ms, e->duration_ms);
    if (e->user && b->users) count_user(b->users, e);
    /* Last, with release: a scraper that reads closed first never sees
     * more closed than opened. */
    __atomic_store_n(&b->closed, __atomic_load_n(&b->closed, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}

static struct sblock *server_block(struct metrics_listener *m, size_t i)
{
    if (!m || !m->sb || i >= METRICS_MAX_SERVERS) return NULL;
    return &m->sb[(size_t)slot() * METRICS_MAX_SERVERS + i];
}

void metrics_server_connected(struct metrics_listener *m, size_t i, uint64_t connect_us)
{
    struct sblock *b = server_block(m, i);
    if (!b) return;
    metrics_hist_observe(&b->connect, &metrics_latency_us, connect_us);
    add(&b->opened, 1);
}

void metrics_server_closed(struct metrics_listener *m, size_t i)
{
    struct sblock *b = server_block(m, i);
    if (b) add(&b->closed, 1);
}

void metrics_server_failed(struct metrics_listener *m, size_t i)
{
    struct sblock *b = server_block(m, i);
    if (b) add(&b->failed, 1);
}

static uint64_t tap_dropped[METRICS_TAP_N];

void metrics_tap_dropped(enum metrics_tap_output out)
{
    if ((unsigned)out < METRICS_TAP_N) __atomic_add_fetch(&tap_dropped[out], 1, __ATOMIC_RELAXED);
}

uint64_t metrics_tap_dropped_total(enum metrics_tap_output out)
{
    return (unsigned)out < METRICS_TAP_N ? __atomic_load_n(&tap_dropped[out], __ATOMIC_RELAXED) : 0;
}

void metrics_dns_lookup(enum metrics_dns result, uint64_t latency_us)
{
    if (!reg.g || (unsigned)result >= MDNS_N) return;
    struct gblock *g = &reg.g[slot()];
    add(&g->dns[result], 1);
    if (latency_us) metrics_hist_observe(&g->dns_latency, &metrics_latency_us, latency_us);
}

/* ---- rendering ---- */

void metrics_printf(struct metrics_out *o, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        if (o->failed) return;
        size_t room = o->cap - o->len;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 16384;
        while (cap < o->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(o->buf, cap);
        if (!p) {
            o->failed = 1;
            return;
        }
        o->buf = p;
        o->cap = cap;
    }
}

void metrics_escape_label(struct metrics_out *o, const char *s)
{
    char tmp[128 * 2 + 1];
    size_t j = 0;
    for (size_t i = 0; i < 128 && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == '"') {
            tmp[j++] = '\\';
            tmp[j++] = (char)c;
        } else if (c == '\n') {
            tmp[j++] = '\\';
            tmp[j++] = 'n';
        } else {
            tmp[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
    }
    tmp[j] = 0;
    metrics_printf(o, "%s", tmp);
}

static void family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
    metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{listener="L"[,extra]} */
static void series(struct metrics_out *o, const char *name, const char *listener, const char *extra)
{
    metrics_printf(o, "%s{listener=\"", name);
    metrics_escape_label(o, listener);
    metrics_printf(o, "\"%s%s}", extra && extra[0] ? "," : "", extra ? extra : "");
}

/* The bucket bound in seconds from ms (scale 1000) or us (1000000). */
static void bound(char *out, size_t len, uint64_t le, uint64_t scale)
{
    snprintf(out, len, "%g", (double)le / (double)scale);
}

/* A histogram's _bucket, _sum and _count lines; labels: `name{L` already
 * escaped, without the closing brace. */
static void hist_lines(struct metrics_out *o, const char *name, const char *labels, const struct metrics_hist *h,
                       const struct metrics_buckets *b, uint64_t scale)
{
    uint64_t cum = 0;
    char le[32];
    const char *sep = labels[0] ? "," : "";
    for (unsigned i = 0; i < b->n; i++) {
        cum += h->bucket[i];
        bound(le, sizeof(le), b->le[i], scale);
        metrics_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le, (unsigned long long)cum);
    }
    cum += h->bucket[b->n];
    metrics_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    const char *lb = labels[0] ? "{" : "", *rb = labels[0] ? "}" : "";
    metrics_printf(o, "%s_sum%s%s%s %.6f\n", name, lb, labels, rb, (double)h->sum / (double)scale);
    metrics_printf(o, "%s_count%s%s%s %llu\n", name, lb, labels, rb, (unsigned long long)h->count);
}

/* `listener="L"` escaped, for hist_lines. */
static void listener_label(char *out, size_t len, const char *name)
{
    struct metrics_out t = { 0 };
    metrics_escape_label(&t, name);
    snprintf(out, len, "listener=\"%s\"", t.buf ? t.buf : "");
    free(t.buf);
}

/* Sum of one listener's blocks, read with relaxed loads. */
struct lsum {
    uint64_t opened, closed, refused[MREF_N], up, down, sent_up, sent_down, ends[METRICS_MAX_ENDS],
        hsfail[METRICS_MAX_ENDS];
    struct metrics_hist duration;
    int shadowed;      /* a newer listener of the same name carries its sums */
};

/* A reload that changes a listener makes a new one of the same name while
 * the old one drains: the newer (nearer the head) speaks for both, so a
 * scrape never has two series of one name and labels. NULL if m is the
 * newest of its name. */
static const struct metrics_listener *newer_twin(const struct metrics_listener *m)
{
    for (const struct metrics_listener *o = reg.head; o && o != m; o = o->next)
        if (strcmp(o->name, m->name) == 0) return o;
    return NULL;
}

static void lsum_add(struct lsum *d, const struct lsum *a)
{
    d->opened += a->opened;
    d->closed += a->closed;
    for (int i = 0; i < MREF_N; i++) d->refused[i] += a->refused[i];
    d->up += a->up;
    d->down += a->down;
    d->sent_up += a->sent_up;
    d->sent_down += a->sent_down;
    for (int i = 0; i < METRICS_MAX_ENDS; i++) {
        d->ends[i] += a->ends[i];
        d->hsfail[i] += a->hsfail[i];
    }
    metrics_hist_sum(&d->duration, &a->duration, &metrics_duration_ms);
}

static void lsum_of(const struct metrics_listener *m, struct lsum *s)
{
    memset(s, 0, sizeof(*s));
    for (unsigned w = 0; w < reg.nslots; w++) {
        const struct lblock *b = &m->lb[w];
        /* closed before opened (acquire): opened >= closed for each block. */
        s->closed += __atomic_load_n(&b->closed, __ATOMIC_ACQUIRE);
        s->opened += metrics_ctr_get(&b->opened);
        for (int i = 0; i < MREF_N; i++) s->refused[i] += metrics_ctr_get(&b->refused[i]);
        s->up += metrics_ctr_get(&b->up);
        s->down += metrics_ctr_get(&b->down);
        s->sent_up += metrics_ctr_get(&b->sent_up);
        s->sent_down += metrics_ctr_get(&b->sent_down);
        for (int i = 0; i < METRICS_MAX_ENDS; i++) {
            s->ends[i] += metrics_ctr_get(&b->ends[i]);
            s->hsfail[i] += metrics_ctr_get(&b->hsfail[i]);
        }
        metrics_hist_sum(&s->duration, &b->duration, &metrics_duration_ms);
    }
}

/* A retired listener's totals go to its newer twin's shared block, so its
 * counters do not go back when the old one is freed. Under reg.lock. */
static void fold_into_twin(const struct metrics_listener *m)
{
    struct metrics_listener *t = NULL;
    for (struct metrics_listener *o = reg.head; o; o = o->next)
        if (o != m && strcmp(o->name, m->name) == 0) {
            t = o;
            break;
        }
    if (!t) return;
    struct lsum a;
    lsum_of(m, &a);
    struct lblock *b = &t->lb[0];      /* the shared slot: atomic adds */
    __atomic_add_fetch(&b->opened, a.opened, __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->closed, a.closed, __ATOMIC_RELEASE);
    for (int i = 0; i < MREF_N; i++) __atomic_add_fetch(&b->refused[i], a.refused[i], __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->up, a.up, __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->down, a.down, __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->sent_up, a.sent_up, __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->sent_down, a.sent_down, __ATOMIC_RELAXED);
    for (int i = 0; i < METRICS_MAX_ENDS; i++) {
        __atomic_add_fetch(&b->ends[i], a.ends[i], __ATOMIC_RELAXED);
        __atomic_add_fetch(&b->hsfail[i], a.hsfail[i], __ATOMIC_RELAXED);
    }
    /* The histogram is counters too (buckets, count, sum). */
    _Static_assert(sizeof(struct metrics_hist) % sizeof(uint64_t) == 0, "a histogram is uint64_t counters");
    uint64_t *dst = (uint64_t *)&b->duration;
    const uint64_t *src = (const uint64_t *)&a.duration;
    for (size_t i = 0; i < sizeof(a.duration) / sizeof(uint64_t); i++) __atomic_add_fetch(&dst[i], src[i], __ATOMIC_RELAXED);
}

static const char *const refuse_names[MREF_N] = { "acl", "limit", "rate", "time_window", "auth", "policy" };

/* Every listener's sums, in registry order (the lock is held by the caller). */
static int sums_of(struct lsum **out, size_t *n)
{
    size_t k = 0;
    for (const struct metrics_listener *m = reg.head; m; m = m->next) k++;
    *out = calloc(k ? k : 1, sizeof(**out));
    if (!*out) return -1;
    k = 0;
    for (const struct metrics_listener *m = reg.head; m; m = m->next) lsum_of(m, &(*out)[k++]);
    *n = k;
    /* Fold each shadowed listener into its newest twin (an earlier entry). */
    k = 0;
    for (const struct metrics_listener *m = reg.head; m; m = m->next, k++) {
        const struct metrics_listener *t = newer_twin(m);
        if (!t) continue;
        size_t j = 0;
        for (const struct metrics_listener *o = reg.head; o != t; o = o->next) j++;
        lsum_add(&(*out)[j], &(*out)[k]);
        (*out)[k].shadowed = 1;
    }
    return 0;
}

static void render_listeners(struct metrics_out *o, const struct lsum *s)
{
    const struct metrics_listener *m;
    size_t k;
    char extra[160], lab[300];
    family(o, "ferry_listener_connections_total", "counter", "Connections accepted (admitted) by the listener.");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        series(o, "ferry_listener_connections_total", m->name, NULL);
        metrics_printf(o, " %llu\n", (unsigned long long)s[k].opened);
    }
    family(o, "ferry_listener_current_connections", "gauge", "Sessions of the listener open now.");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        series(o, "ferry_listener_current_connections", m->name, NULL);
        metrics_printf(o, " %llu\n", (unsigned long long)(s[k].opened - s[k].closed));
    }
    family(o, "ferry_listener_refused_connections_total", "counter",
           "Connections refused, by reason (acl, limit, rate, time_window, auth, policy).");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        for (int i = 0; i < MREF_N; i++) {
            snprintf(extra, sizeof(extra), "reason=\"%s\"", refuse_names[i]);
            series(o, "ferry_listener_refused_connections_total", m->name, extra);
            metrics_printf(o, " %llu\n", (unsigned long long)s[k].refused[i]);
        }
    }
    family(o, "ferry_received_bytes_total", "counter",
           "Application bytes received, by direction (up: from clients, down: from upstreams), counted when the "
           "session ends.");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        series(o, "ferry_received_bytes_total", m->name, "direction=\"up\"");
        metrics_printf(o, " %llu\n", (unsigned long long)s[k].up);
        series(o, "ferry_received_bytes_total", m->name, "direction=\"down\"");
        metrics_printf(o, " %llu\n", (unsigned long long)s[k].down);
    }
    family(o, "ferry_sent_bytes_total", "counter",
           "Bytes written, by direction (up: to upstreams, down: to clients), as on the wire (Shadowsocks "
           "framing, PROXY headers, replies and what toxics, rewrites and filters changed included), counted "
           "when the session ends.");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        series(o, "ferry_sent_bytes_total", m->name, "direction=\"up\"");
        metrics_printf(o, " %llu\n", (unsigned long long)s[k].sent_up);
        series(o, "ferry_sent_bytes_total", m->name, "direction=\"down\"");
        metrics_printf(o, " %llu\n", (unsigned long long)s[k].sent_down);
    }
    family(o, "ferry_session_ends_total", "counter", "Sessions ended, by reason (the log's end= field).");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        for (int i = 0; i < METRICS_MAX_ENDS; i++) {
            const char *nm = __atomic_load_n(&reg.end_names[i], __ATOMIC_ACQUIRE);
            if (!nm || !s[k].ends[i]) continue;
            snprintf(extra, sizeof(extra), "reason=\"%s\"", nm);
            series(o, "ferry_session_ends_total", m->name, extra);
            metrics_printf(o, " %llu\n", (unsigned long long)s[k].ends[i]);
        }
    }
    family(o, "ferry_handshake_failures_total", "counter",
           "Client handshakes that failed, by protocol and reason (probes, auth, SOCKS request failures).");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        const char *proto = __atomic_load_n(&m->hs_proto, __ATOMIC_ACQUIRE);
        for (int i = 0; proto && i < METRICS_MAX_ENDS; i++) {
            const char *nm = __atomic_load_n(&reg.end_names[i], __ATOMIC_ACQUIRE);
            if (!nm || !s[k].hsfail[i]) continue;
            snprintf(extra, sizeof(extra), "proto=\"%s\",reason=\"%s\"", proto, nm);
            series(o, "ferry_handshake_failures_total", m->name, extra);
            metrics_printf(o, " %llu\n", (unsigned long long)s[k].hsfail[i]);
        }
    }
    family(o, "ferry_session_duration_seconds", "histogram", "Session lifetimes, from accept to close.");
    for (m = reg.head, k = 0; m; m = m->next, k++) {
        if (s[k].shadowed) continue;
        listener_label(lab, sizeof(lab), m->name);
        hist_lines(o, "ferry_session_duration_seconds", lab, &s[k].duration, &metrics_duration_ms, 1000);
    }
}

/* server="NAME",listener="L" for one server. */
static void server_labels(char *out, size_t len, const struct metrics_listener *m, size_t i)
{
    char name[300];
    struct metrics_out t = { 0 };
    name[0] = 0;
    m->sops->name(m->sctx, i, name, sizeof(name));
    metrics_escape_label(&t, m->name);
    metrics_printf(&t, "\",server=\"");
    metrics_escape_label(&t, name);
    snprintf(out, len, "listener=\"%s\"", t.buf ? t.buf : "");   /* closes server's quote */
    free(t.buf);
}

struct ssum {
    uint64_t opened, closed, failed;
    struct metrics_hist connect;
};

static void ssum_of(const struct metrics_listener *m, size_t i, struct ssum *s)
{
    memset(s, 0, sizeof(*s));
    for (unsigned w = 0; w < reg.nslots; w++) {
        const struct sblock *b = &m->sb[(size_t)w * METRICS_MAX_SERVERS + i];
        s->closed += metrics_ctr_get(&b->closed);
        s->opened += metrics_ctr_get(&b->opened);
        s->failed += metrics_ctr_get(&b->failed);
        metrics_hist_sum(&s->connect, &b->connect, &metrics_latency_us);
    }
}

static void render_servers(struct metrics_out *o)
{
    static const struct { const char *name, *type, *help; } fam[] = {
        { "ferry_server_up", "gauge", "1 if the upstream server is up (health checks and passive ejection)." },
        { "ferry_server_current_connections", "gauge", "Connections to the server open now." },
        { "ferry_server_connections_total", "counter", "Connections to the server made." },
        { "ferry_server_connect_failures_total", "counter", "Connect attempts to the server that failed." },
        { "ferry_server_check_transitions_total", "counter", "Health check state changes (up to down, down to up)." },
        { "ferry_server_connect_duration_seconds", "histogram", "Time to connect to the server." },
    };
    char lab[800];
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        family(o, fam[f].name, fam[f].type, fam[f].help);
        for (const struct metrics_listener *m = reg.head; m; m = m->next) {
            if (newer_twin(m)) continue;     /* the old config's servers: the new one's speak */
            size_t n = m->sops && m->sb ? m->sops->count(m->sctx) : 0;
            for (size_t i = 0; i < n && i < METRICS_MAX_SERVERS; i++) {
                struct ssum s;
                char nm[300];
                nm[0] = '\0';
                m->sops->name(m->sctx, i, nm, sizeof(nm));
                if (!nm[0]) continue;            /* an unused slot of a discovered group */
                ssum_of(m, i, &s);
                server_labels(lab, sizeof(lab), m, i);
                uint64_t v = 0;
                switch (f) {
                case 0: v = (uint64_t)m->sops->up(m->sctx, i); break;
                case 1: v = s.opened >= s.closed ? s.opened - s.closed : 0; break;
                case 2: v = s.opened; break;
                case 3: v = s.failed; break;
                case 4: v = m->sops->transitions(m->sctx, i); break;
                default:
                    hist_lines(o, fam[f].name, lab, &s.connect, &metrics_latency_us, 1000000);
                    continue;
                }
                metrics_printf(o, "%s{%s} %llu\n", fam[f].name, lab, (unsigned long long)v);
            }
        }
    }
}

/* Users are named by the worker that met them first; the scrape merges
 * the workers' tables by name. */
static unsigned users_n(const struct user_table *t)
{
    return t ? __atomic_load_n(&t->n, __ATOMIC_ACQUIRE) : 0;
}

/* 1 when a worker before w already named this user. */
static int user_seen_before(const struct metrics_listener *m, unsigned w, const char *name)
{
    for (unsigned pw = 0; pw < w; pw++) {
        const struct user_table *t = m->lb[pw].users;
        for (unsigned j = 0; j < users_n(t); j++)
            if (strcmp(t->u[j].name, name) == 0) return 1;
    }
    return 0;
}

/* Field f (0 sessions, 1 up, 2 down) of the user, summed from worker w on. */
static uint64_t user_sum(const struct metrics_listener *m, unsigned w, const char *name, int f)
{
    uint64_t v = 0;
    for (; w < reg.nslots; w++) {
        const struct user_table *t = m->lb[w].users;
        for (unsigned j = 0; j < users_n(t); j++) {
            if (strcmp(t->u[j].name, name) != 0) continue;
            v += metrics_ctr_get(f == 0 ? &t->u[j].sessions : f == 1 ? &t->u[j].up : &t->u[j].down);
        }
    }
    return v;
}

/* --metrics-users: sessions and bytes per authenticated user. */
static void render_users(struct metrics_out *o)
{
    static const char *const fams[3] = { "ferry_user_sessions_total", "ferry_user_received_bytes_total",
                                         "ferry_user_sent_bytes_total" };
    static const char *const helps[3] = {
        "Sessions of an authenticated user (--metrics-users).",
        "Application bytes received from an authenticated user's clients (--metrics-users).",
        "Application bytes sent to an authenticated user's clients (--metrics-users).",
    };
    if (!reg.users) return;
    for (int f = 0; f < 3; f++) {
        family(o, fams[f], "counter", helps[f]);
        for (const struct metrics_listener *m = reg.head; m; m = m->next) {
            if (newer_twin(m)) continue;     /* counted anew by the newer twin */
            for (unsigned w = 0; w < reg.nslots; w++) {
                const struct user_table *t = m->lb[w].users;
                for (unsigned i = 0; i < users_n(t); i++) {
                    if (user_seen_before(m, w, t->u[i].name)) continue;
                    metrics_printf(o, "%s{listener=\"", fams[f]);
                    metrics_escape_label(o, m->name);
                    metrics_printf(o, "\",user=\"");
                    metrics_escape_label(o, t->u[i].name);
                    metrics_printf(o, "\"} %llu\n", (unsigned long long)user_sum(m, w, t->u[i].name, f));
                }
            }
        }
    }
}

static void render_dns(struct metrics_out *o)
{
    static const char *const names[MDNS_N] = { "ok", "cached", "not_found", "timeout", "failed", "refused" };
    uint64_t v[MDNS_N] = { 0 };
    struct metrics_hist h;
    memset(&h, 0, sizeof(h));
    for (unsigned w = 0; w < reg.nslots; w++) {
        for (int i = 0; i < MDNS_N; i++) v[i] += metrics_ctr_get(&reg.g[w].dns[i]);
        metrics_hist_sum(&h, &reg.g[w].dns_latency, &metrics_latency_us);
    }
    family(o, "ferry_dns_lookups_total", "counter",
           "Name lookups for sessions and health checks, by result (refused: over --resolve-max-inflight).");
    for (int i = 0; i < MDNS_N; i++)
        metrics_printf(o, "ferry_dns_lookups_total{result=\"%s\"} %llu\n", names[i], (unsigned long long)v[i]);
    family(o, "ferry_dns_lookup_duration_seconds", "histogram", "Time of lookups that went to DNS.");
    hist_lines(o, "ferry_dns_lookup_duration_seconds", "", &h, &metrics_latency_us, 1000000);
}

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n - 3;      /* ".", ".." and the directory's own fd */
}

static void render_process(struct metrics_out *o)
{
    long fds = count_fds(), pages = 0, rss = 0;
    struct rlimit rl;
    char line[128];
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        /* "size resident shared ...", in pages */
        if (fgets(line, sizeof(line), f)) {
            char *end;
            pages = strtol(line, &end, 10);
            rss = strtol(end, NULL, 10);
        }
        fclose(f);
    }
    if (fds >= 0) {
        family(o, "process_open_fds", "gauge", "Number of open file descriptors.");
        metrics_printf(o, "process_open_fds %ld\n", fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        family(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        metrics_printf(o, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    family(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    metrics_printf(o, "process_resident_memory_bytes %lld\n", (long long)rss * sysconf(_SC_PAGESIZE));
    family(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    metrics_printf(o, "process_virtual_memory_bytes %lld\n", (long long)pages * sysconf(_SC_PAGESIZE));
}

int metrics_render(struct metrics_out *o, const char *version)
{
    memset(o, 0, sizeof(*o));
    family(o, "ferry_build_info", "gauge", "Always 1; the version is a label.");
    metrics_printf(o, "ferry_build_info{version=\"");
    metrics_escape_label(o, version);
    metrics_printf(o, "\"} 1\n");
    family(o, "ferry_log_dropped_lines_total", "counter",
           "Log lines dropped because the log (a pipe, journald, a disk) could not keep up.");
    metrics_printf(o, "ferry_log_dropped_lines_total %llu\n", (unsigned long long)log_dropped_lines());
    family(o, "ferry_syslog_dropped_lines_total", "counter",
           "Log lines --syslog did not deliver: the daemon's queue was full, or it was not there (restarting).");
    metrics_printf(o, "ferry_syslog_dropped_lines_total %llu\n", (unsigned long long)syslog_dropped_lines());
    family(o, "ferry_capture_dropped_records_total", "counter",
           "Capture (pcap) and hexdump records dropped because their writer was behind (traffic is never held).");
    metrics_printf(o, "ferry_capture_dropped_records_total{output=\"pcap\"} %llu\n",
                   (unsigned long long)metrics_tap_dropped_total(METRICS_TAP_PCAP));
    metrics_printf(o, "ferry_capture_dropped_records_total{output=\"hexdump\"} %llu\n",
                   (unsigned long long)metrics_tap_dropped_total(METRICS_TAP_HEXDUMP));
    pthread_mutex_lock(&reg.lock);
    struct lsum *s = NULL;
    size_t n = 0;
    if (sums_of(&s, &n) < 0) o->failed = 1;
    else render_listeners(o, s);
    free(s);
    render_servers(o);
    render_users(o);
    pthread_mutex_unlock(&reg.lock);
    if (reg.g) render_dns(o);
    render_process(o);
    if (!o->failed && !o->buf) metrics_printf(o, "%s", "");
    if (o->failed) {
        free(o->buf);
        memset(o, 0, sizeof(*o));
        return -1;
    }
    return 0;
}
