/* tap.c - see tap.h. A session's tap turns socket events into synthesized
 * packets (pcap_tcp.h) for its listener's capture file (capture.h), and
 * application bytes into dumps (hexlog.h).
 *
 * Legs: on the client leg the client opened the connection (side 0) and
 * ferry's accepted socket is side 1; on the upstream leg ferry is side 0
 * and the server side 1. Each leg gets its SYN exchange when it becomes
 * known (accept, tap_upstream), so a leg in the file always starts like a
 * real connection and its sequence numbers count exactly the bytes that
 * crossed the socket, whatever the capture dropped.
 */
#include "stage/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stage/capture.h"
#include "stage/hexlog.h"
#include "stage/pcap_tcp.h"

/* Packets of the client leg kept while a port filter waits for the
 * upstream's port; beyond, they are dropped (counted). */
#define TAP_PENDING_MAX (64u << 10)

struct tap {
    struct capture *cap;          /* NULL: this session is not captured */
    struct hexlog *hex;           /* NULL: not dumped */
    const struct capfilter *filter;
    uint64_t id;
    int64_t now_us;               /* timestamp of the event being recorded */
    struct ptcp_leg leg[2];
    uint8_t leg_on[2];
    uint8_t pending;              /* port filter undecided: packets go to pend */
    uint8_t *pend;                /* [i64 ts][u32 hlen][u32 n][hdr][payload]... */
    size_t pend_len, pend_cap;    /* grown on demand up to TAP_PENDING_MAX */
    uint64_t hex_off[2];          /* bytes dumped: [0] client>upstream, [1] back */
    uint64_t cin;                 /* client-leg bytes from the client, recorded */
    uint64_t secret_lo, secret_hi;/* client stream span written as '*' (lo == hi: none) */
    uint64_t cin_secret_from;     /* the client leg from here on is '*' (UINT64_MAX: none) */
    uint8_t keep_secrets;         /* --capture-secrets */
    uint8_t holding;              /* tap_hold: events wait in held */
    uint8_t *held;                /* [struct held_ev][payload]... */
    size_t held_len, held_cap;
};

/* An event kept between tap_hold and tap_release. */
enum { EV_BYTES, EV_PLAIN };
struct held_ev {
    int64_t ts_us;
    uint32_t n;
    uint8_t kind;
    uint8_t leg;                  /* EV_BYTES */
    uint8_t dir;                  /* EV_BYTES: from_peer; EV_PLAIN: up */
};

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ISNs only need to differ between legs and sessions, as real ones do. */
static uint32_t isn(uint64_t id, int64_t now, unsigned k)
{
    uint64_t z = id * 0x9e3779b97f4a7c15ull + (uint64_t)now + k * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)(z ^ (z >> 31));
}

static void end_of(const struct net_addr *a, struct ptcp_end *e)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(a, &len);
    memset(e, 0, sizeof(*e));
    e->family = len == 4 ? 4 : 6;
    memcpy(e->ip, ip, len);
    e->port = net_addr_port(a);
}

static void pend_add(struct tap *t, const uint8_t *hdr, size_t hlen, const uint8_t *payload, size_t n)
{
    uint32_t lens[2] = { (uint32_t)hlen, (uint32_t)n };
    size_t need = sizeof(t->now_us) + sizeof(lens) + hlen + n;
    if (t->pend_len + need > TAP_PENDING_MAX) {
        capture_count_drop(t->cap);
        return;
    }
    if (t->pend_len + need > t->pend_cap) {
        /* Usually a handshake's few packets wait here: start small. */
        size_t cap = t->pend_cap ? t->pend_cap : 4096;
        while (cap < t->pend_len + need) cap *= 2;
        if (cap > TAP_PENDING_MAX) cap = TAP_PENDING_MAX;
        uint8_t *p = realloc(t->pend, cap);
        if (!p) {
            capture_count_drop(t->cap);
            return;
        }
        t->pend = p;
        t->pend_cap = cap;
    }
    uint8_t *o = t->pend + t->pend_len;
    memcpy(o, &t->now_us, sizeof(t->now_us));
    memcpy(o + sizeof(t->now_us), lens, sizeof(lens));
    o += sizeof(t->now_us) + sizeof(lens);
    memcpy(o, hdr, hlen);
    if (n) memcpy(o + hlen, payload, n);
    t->pend_len += need;
}

static void emit(void *ctx, const uint8_t *hdr, size_t hlen, const uint8_t *payload, size_t n)
{
    struct tap *t = ctx;
    if (t->pending) pend_add(t, hdr, hlen, payload, n);
    else capture_put(t->cap, t->now_us, hdr, hlen, payload, n);
}

/* The port filter has spoken: what waited goes to the file, or away. */
static void pend_settle(struct tap *t, int keep)
{
    for (size_t off = 0; keep && off < t->pend_len;) {
        int64_t ts;
        uint32_t lens[2];
        memcpy(&ts, t->pend + off, sizeof(ts));
        memcpy(lens, t->pend + off + sizeof(ts), sizeof(lens));
        const uint8_t *hdr = t->pend + off + sizeof(ts) + sizeof(lens);
        capture_put(t->cap, ts, hdr, lens[0], hdr + lens[0], lens[1]);
        off += sizeof(ts) + sizeof(lens) + lens[0] + lens[1];
    }
    free(t->pend);
    t->pend = NULL;
    t->pend_len = t->pend_cap = 0;
    t->pending = 0;
    if (!keep) t->cap = NULL;
}

static void leg_start(struct tap *t, enum tap_leg leg, const struct net_addr *side0, const struct net_addr *side1)
{
    struct ptcp_end a, b;
    end_of(side0, &a);
    end_of(side1, &b);
    /* A failed getsockname() leaves ferry's end unknown: keep the leg in
     * one family, with a zero address, rather than mix v4 and v6. */
    if (a.family != b.family) {
        struct ptcp_end *unknown = leg == TAP_CLIENT ? &b : &a;
        unknown->family = leg == TAP_CLIENT ? a.family : b.family;
        memset(unknown->ip, 0, sizeof(unknown->ip));
    }
    ptcp_leg_init(&t->leg[leg], &a, &b, isn(t->id, t->now_us, 2 * leg), isn(t->id, t->now_us, 2 * leg + 1));
    t->leg_on[leg] = 1;
    ptcp_handshake(&t->leg[leg], emit, t);
}

/* Which side of the leg sent: the peer is side 0 of the client leg (it
 * connected to ferry) and side 1 of the upstream leg (ferry connected). */
static int sender(enum tap_leg leg, int from_peer)
{
    int peer = leg == TAP_CLIENT ? 0 : 1;
    return from_peer ? peer : !peer;
}

/* ---- secrets: hold, mark, release ---- */

static int overlaps(const struct tap *t, uint64_t off, size_t n)
{
    return t->secret_lo < t->secret_hi && off < t->secret_hi && off + n > t->secret_lo;
}

/* Stars over the secret bytes of a chunk that starts at stream offset off. */
static void redact(const struct tap *t, uint64_t off, uint8_t *p, size_t n)
{
    if (!overlaps(t, off, n)) return;
    uint64_t lo = off > t->secret_lo ? off : t->secret_lo;
    uint64_t hi = off + n < t->secret_hi ? off + n : t->secret_hi;
    memset(p + (lo - off), '*', (size_t)(hi - lo));
}

/* The client leg's chunk at stream offset off reaches into what is starred
 * from cin_secret_from on. */
static int past_end(const struct tap *t, uint64_t off, size_t n) { return off + n > t->cin_secret_from; }

static void redact_client(const struct tap *t, uint64_t off, uint8_t *p, size_t n)
{
    redact(t, off, p, n);
    if (!past_end(t, off, n)) return;
    uint64_t lo = off > t->cin_secret_from ? off : t->cin_secret_from;
    memset(p + (lo - off), '*', (size_t)(off + n - lo));
}

/* No memory to keep an event: this session goes unrecorded from here on,
 * rather than recorded with a secret in clear or a hole in its stream. */
static void give_up(struct tap *t)
{
    if (t->cap) capture_count_drop(t->cap);
    t->cap = NULL;
    t->hex = NULL;
    free(t->held);
    t->held = NULL;
    t->held_len = t->held_cap = 0;
}

static int hold_add(struct tap *t, uint8_t kind, uint8_t leg, uint8_t dir, const void *p, size_t n)
{
    struct held_ev ev = { wall_us(), (uint32_t)n, kind, leg, dir };
    size_t need = t->held_len + sizeof(ev) + n;
    if (need > t->held_cap) {
        /* One read and the replies to it, as a rule: a few hundred bytes. */
        size_t cap = t->held_cap ? t->held_cap : 1024;
        while (cap < need) cap *= 2;
        uint8_t *q = realloc(t->held, cap);
        if (!q) {
            give_up(t);
            return -1;
        }
        t->held = q;
        t->held_cap = cap;
    }
    memcpy(t->held + t->held_len, &ev, sizeof(ev));
    memcpy(t->held + t->held_len + sizeof(ev), p, n);
    t->held_len = need;
    return 0;
}

/* One event, its payload a writable copy: the secret span is starred here,
 * at the offset the event has in its stream. */
static void deliver(struct tap *t, const struct held_ev *ev, uint8_t *p)
{
    if (ev->kind == EV_PLAIN) {
        if (!t->hex) return;
        if (ev->dir) redact(t, t->hex_off[0], p, ev->n);
        hexlog_put(t->hex, ev->ts_us, t->id, ev->dir, &t->hex_off[ev->dir ? 0 : 1], p, ev->n);
        return;
    }
    if (!t->cap || !t->leg_on[ev->leg]) return;
    if (ev->leg == TAP_CLIENT && ev->dir) {
        redact_client(t, t->cin, p, ev->n);
        t->cin += ev->n;
    }
    t->now_us = ev->ts_us;
    ptcp_data(&t->leg[ev->leg], sender((enum tap_leg)ev->leg, ev->dir), p, ev->n, emit, t);
}

static void flush_held(struct tap *t)
{
    for (size_t off = 0; off < t->held_len;) {
        struct held_ev ev;
        memcpy(&ev, t->held + off, sizeof(ev));
        deliver(t, &ev, t->held + off + sizeof(ev));
        off += sizeof(ev) + ev.n;
    }
    free(t->held);
    t->held = NULL;
    t->held_len = t->held_cap = 0;
}

/* Whether the event was taken into held: while holding, or when it has
 * secret bytes (they need a writable copy; it goes out at once then). */
static int kept(struct tap *t, int secret, uint8_t kind, uint8_t leg, uint8_t dir, const void *p, size_t n)
{
    if (!t->holding && !secret) return 0;
    if (hold_add(t, kind, leg, dir, p, n) == 0 && !t->holding) flush_held(t);
    return 1;
}

void tap_hold(struct tap *t)
{
    if (t && !t->keep_secrets) t->holding = 1;
}

void tap_release(struct tap *t)
{
    if (!t) return;
    t->holding = 0;
    flush_held(t);
}

void tap_secret(struct tap *t, uint64_t off, size_t n)
{
    if (!t || t->keep_secrets || n == 0) return;
    if (t->secret_lo == t->secret_hi) {
        t->secret_lo = off;
        t->secret_hi = off + n;
        return;
    }
    if (off < t->secret_lo) t->secret_lo = off;
    if (off + n > t->secret_hi) t->secret_hi = off + n;
}

void tap_secret_from(struct tap *t, uint64_t off)
{
    if (t && !t->keep_secrets && off < t->cin_secret_from) t->cin_secret_from = off;
}

/* ---- sessions ---- */

int tap_enabled(const struct listener_cfg *cfg)
{
    return cfg->capture || cfg->hexlog;
}

int tap_wants_addresses(const struct listener_cfg *cfg)
{
    return cfg->capture != NULL;
}

int tap_captures(const struct tap *t)
{
    return t && t->cap;
}

struct tap *tap_open(const struct listener_cfg *cfg, uint64_t sess_id, const struct net_addr *client,
                     const struct net_addr *local)
{
    struct capture *cap = cfg->capture;
    if (cap) {
        size_t len;
        const uint8_t *ip = net_addr_ip(client, &len);
        if (!capfilter_client_ok(&cfg->capture_filter, len == 4 ? 4 : 6, ip)) cap = NULL;
    }
    if (!cap && !cfg->hexlog) return NULL;
    struct tap *t = calloc(1, sizeof(*t));
    if (!t) {
        if (cap) capture_count_drop(cap);
        return NULL;
    }
    t->cap = cap;
    t->hex = cfg->hexlog;
    t->filter = &cfg->capture_filter;
    t->id = sess_id;
    t->keep_secrets = (uint8_t)cfg->capture_secrets;
    t->cin_secret_from = UINT64_MAX;
    t->now_us = wall_us();
    t->pending = cap && cfg->capture_filter.nports;
    if (cap) leg_start(t, TAP_CLIENT, client, local);
    return t;
}

void tap_upstream(struct tap *t, const struct net_addr *local, const struct net_addr *remote)
{
    if (!t) return;
    tap_release(t);
    if (!t->cap || t->leg_on[TAP_UPSTREAM]) return;
    t->now_us = wall_us();
    if (t->pending) pend_settle(t, capfilter_port_ok(t->filter, net_addr_port(remote)));
    if (t->cap) leg_start(t, TAP_UPSTREAM, local, remote);
}

void tap_bytes(struct tap *t, enum tap_leg leg, int from_peer, const void *p, size_t n)
{
    if (!t || !t->cap || !t->leg_on[leg] || !n) return;
    int client_in = leg == TAP_CLIENT && from_peer;
    int secret = client_in && (overlaps(t, t->cin, n) || past_end(t, t->cin, n));
    if (kept(t, secret, EV_BYTES, (uint8_t)leg, (uint8_t)!!from_peer, p, n)) return;
    if (client_in) t->cin += n;
    t->now_us = wall_us();
    ptcp_data(&t->leg[leg], sender(leg, from_peer), p, n, emit, t);
}

void tap_plain(struct tap *t, int up, const void *p, size_t n)
{
    if (!t || !t->hex || !n) return;
    if (kept(t, up && overlaps(t, t->hex_off[0], n), EV_PLAIN, 0, (uint8_t)!!up, p, n)) return;
    hexlog_put(t->hex, wall_us(), t->id, up, &t->hex_off[up ? 0 : 1], p, n);
}

void tap_fin(struct tap *t, enum tap_leg leg, int from_peer)
{
    if (!t) return;
    tap_release(t);
    if (!t->cap || !t->leg_on[leg]) return;
    t->now_us = wall_us();
    ptcp_fin(&t->leg[leg], sender(leg, from_peer), emit, t);
}

void tap_close(struct tap *t, int rst_client, int rst_upstream)
{
    if (!t) return;
    tap_release(t);
    t->now_us = wall_us();
    /* Still undecided: the session never reached an upstream, so no port
     * could match; its packets are dropped (cap goes NULL) before the
     * closing ones are built for nothing. */
    if (t->pending) pend_settle(t, 0);
    for (int leg = 0; t->cap && leg < 2; leg++) {
        if (!t->leg_on[leg]) continue;
        int ferry = sender((enum tap_leg)leg, 0);
        if (leg == TAP_CLIENT ? rst_client : rst_upstream) {
            ptcp_rst(&t->leg[leg], ferry, emit, t);
        } else {
            ptcp_fin(&t->leg[leg], ferry, emit, t);
            ptcp_fin(&t->leg[leg], !ferry, emit, t);
        }
    }
    free(t);
}

/* The listener before l (in cfg order) whose capture or hexdump goes to
 * the same place, so that they share one file and one writer. */
static const struct listener_cfg *same_capture(const struct ferry_cfg *cfg, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (cfg->listeners[j].capture && strcmp(cfg->listeners[j].capture_path, cfg->listeners[i].capture_path) == 0)
            return &cfg->listeners[j];
    return NULL;
}

static const struct listener_cfg *same_hexlog(const struct ferry_cfg *cfg, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (cfg->listeners[j].hexlog && strcmp(cfg->listeners[j].hexdump_file, cfg->listeners[i].hexdump_file) == 0)
            return &cfg->listeners[j];
    return NULL;
}

static int start_one(struct ferry_cfg *cfg, size_t i, char *err, size_t errlen)
{
    struct listener_cfg *l = &cfg->listeners[i];
    if (l->capture_path[0]) {
        const struct listener_cfg *o = same_capture(cfg, i);
        if (o && o->capture_rotate != l->capture_rotate) {
            snprintf(err, errlen, "listeners %s and %s write to --capture '%.200s' with different --capture-rotate",
                     o->name, l->name, l->capture_path);
            return -1;
        }
        l->capture = o ? o->capture : capture_open(l->capture_path, l->capture_rotate, err, errlen);
        if (!l->capture) return -1;
    }
    if (l->hexdump) {
        const struct listener_cfg *o = same_hexlog(cfg, i);
        l->hexlog = o ? o->hexlog : hexlog_open(l->hexdump_file, err, errlen);
        if (!l->hexlog) return -1;
    }
    return 0;
}

int tap_global_start(struct ferry_cfg *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (start_one(cfg, i, err, errlen) < 0) {
            tap_global_stop(cfg);
            return -1;
        }
    }
    return 0;
}

void tap_global_stop(struct ferry_cfg *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct capture *c = cfg->listeners[i].capture;
        struct hexlog *h = cfg->listeners[i].hexlog;
        /* Shared ones are closed once: forget them everywhere first. */
        for (size_t j = i; j < cfg->nlisteners; j++) {
            if (c && cfg->listeners[j].capture == c) cfg->listeners[j].capture = NULL;
            if (h && cfg->listeners[j].hexlog == h) cfg->listeners[j].hexlog = NULL;
        }
        capture_close(c);
        hexlog_close(h);
    }
}
