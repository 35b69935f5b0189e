/* ss_udp_server.c - see ss_udp_server.h. */
#include "relay/ss_udp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "crypto/rand_pool.h"
#include "crypto/replay.h"
#include "net/sock.h"
#include "net/udp.h"
#include "obs/log.h"
#include "policy/acl.h"
#include "proto/socks5.h"
#include "proto/ss_udp.h"
#include "relay/front.h"
#include "relay/rlistener-t.h"
#include "relay/rlistener.h"
#include "relay/session.h"
#include "relay/udp_out.h"

#define SS_UDP_BUDGET 64          /* datagrams per socket per wakeup */
#define SS_UDP_BUCKETS 1024       /* hash buckets of the NAT table */
/* Clients at once when --maxconn sets no lower bound: each holds a few KiB
 * and up to two sockets. */
#define SS_UDP_CLIENTS_MAX 4096
#define SS_UDP_RCVBUF (4 * 1024 * 1024)

struct ss_udp_client {
    struct ss_udp_server *srv;
    struct ss_udp_client *next;           /* hash chain */
    struct net_addr addr;                 /* the client's address and port */
    unsigned sock;                        /* the listening socket it came in on: replies leave by it */
    int counted_ip;                       /* admission counts, given back at the end */
    uint64_t id, start_ms;                /* start_ms: the loop's clock, as its timers */
    struct loop_timer timer;
    struct udp_out out;
    char first_dest[SOCKS_ADDR_FMT_MAX];  /* for the log */
};

struct ss_udp_server {
    struct relay_listener *rl;
    struct loop *loop;
    const struct ss_method *m;
    struct loop_io io[CFG_MAX_LISTEN];
    size_t nio;
    struct ss_udp_client *buckets[SS_UDP_BUCKETS];
    unsigned nclients;
    /* Drops no client is there to be told of; logged at debug level as
     * they happen, and in the last line at stop. */
    uint64_t drop_auth, drop_replay, drop_refused, drop_full;
    uint32_t kernel[CFG_MAX_LISTEN];
};

static const struct listener_cfg *cfg_of(const struct ss_udp_server *u) { return u->rl->cfg; }

/* The UDP sockets in use, by the address they are bound to. A reload's
 * new listener on an address takes a dup() of the socket bound there at
 * start, rather than binding again: that bind came before privileges were
 * dropped (a port below 1024, or a SO_REUSEPORT group another user's
 * socket cannot join), and one socket means the port never closes and no
 * datagram lands in a socket nobody reads. */
#define SS_UDP_SOCKETS 64
static struct {
    struct net_addr addr;
    int fd;                      /* the first socket; users hold dup()s of it */
    unsigned refs;
} held[SS_UDP_SOCKETS];
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

/* A dup of the socket bound at a, binding it first if nobody holds one.
 * -1 with errno. Called with held_lock. */
static int take_socket(const struct net_addr *a)
{
    int free_slot = -1;
    for (int i = 0; i < SS_UDP_SOCKETS; i++) {
        if (held[i].refs && net_addr_equal(&held[i].addr, a)) {
            int fd = fcntl(held[i].fd, F_DUPFD_CLOEXEC, 0);
            if (fd >= 0) held[i].refs++;
            return fd;
        }
        if (!held[i].refs && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) {
        errno = EMFILE;
        return -1;
    }
    int s = udp_socket(a->u.sa.sa_family, a, 1), fd;
    if (s < 0) return -1;
    /* Every client shares this socket (UDP ASSOCIATE has one per
     * association): a deeper queue rides out bursts while one thread reads
     * it. Best effort, up to net.core.rmem_max. */
    int rcvbuf = SS_UDP_RCVBUF;
    (void)setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (sock_local_addr(s, &held[free_slot].addr) < 0 || (fd = fcntl(s, F_DUPFD_CLOEXEC, 0)) < 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    held[free_slot].fd = s;
    held[free_slot].refs = 1;
    return fd;
}

static void give_back(int fd)
{
    struct net_addr a;
    int r = sock_local_addr(fd, &a);
    close(fd);
    if (r < 0) return;
    for (int i = 0; i < SS_UDP_SOCKETS; i++) {
        if (!held[i].refs || !net_addr_equal(&held[i].addr, &a)) continue;
        if (--held[i].refs == 0) close(held[i].fd);
        return;
    }
}

int ss_udp_bind(const struct listener_cfg *lc, int *fds, char *err, size_t errlen)
{
    char a[NET_ADDR_STRLEN];
    pthread_mutex_lock(&held_lock);
    for (size_t j = 0; j < lc->nlisten; j++) {
        fds[j] = take_socket(&lc->listen[j]);
        if (fds[j] < 0) {
            snprintf(err, errlen, "cannot bind UDP %s: %s", net_addr_format(&lc->listen[j], a, sizeof(a)),
                     strerror(errno));
            for (size_t k = 0; k < j; k++) give_back(fds[k]);
            pthread_mutex_unlock(&held_lock);
            return -1;
        }
    }
    pthread_mutex_unlock(&held_lock);
    return (int)lc->nlisten;
}

void ss_udp_unbind(const int *fds, size_t n)
{
    pthread_mutex_lock(&held_lock);
    for (size_t j = 0; j < n; j++) give_back(fds[j]);
    pthread_mutex_unlock(&held_lock);
}

/* ---- the NAT table ---- */

static unsigned bucket_of(const struct net_addr *a)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(a, &len);
    uint32_t h = 2166136261u;                     /* FNV-1a over IP and port */
    for (size_t i = 0; i < len; i++) h = (h ^ ip[i]) * 16777619u;
    h = (h ^ net_addr_port(a)) * 16777619u;
    return h % SS_UDP_BUCKETS;
}

static struct ss_udp_client *find_client(struct ss_udp_server *u, const struct net_addr *a)
{
    for (struct ss_udp_client *c = u->buckets[bucket_of(a)]; c; c = c->next)
        if (net_addr_equal(&c->addr, a)) return c;
    return NULL;
}

static void log_client(const struct ss_udp_client *c, const char *end)
{
    char who[NET_ADDR_STRLEN], dest[SOCKS_ADDR_FMT_MAX], counts[200];
    const struct udp_out_stats *t = &c->out.st;
    if (!(log_sessions() & LOG_SESS_END) || !log_enabled(LOG_INFO)) return;
    log_sanitize(dest, sizeof(dest), c->first_dest[0] ? c->first_dest : "-");
    udp_out_format_counts(t, counts, sizeof(counts));
    log_msg(LOG_INFO, "sess=%llu listener=%s client=%s upstream=- proto=ss-udp up=%llu down=%llu dur_ms=%llu end=%s "
            "%s udp_drop_denied=%llu udp_drop_dns=%llu udp_drop_send=%llu udp_drop_unsolicited=%llu "
            "udp_drop_kernel=%llu udp_dest=%s",
            (unsigned long long)c->id, cfg_of(c->srv)->name, net_addr_format(&c->addr, who, sizeof(who)),
            (unsigned long long)t->up_bytes, (unsigned long long)t->down_bytes,
            (unsigned long long)(clock_now_ms() - c->start_ms), end, counts, (unsigned long long)t->drop_denied,
            (unsigned long long)t->drop_dns, (unsigned long long)t->drop_send,
            (unsigned long long)t->drop_unsolicited, (unsigned long long)t->kernel[0] + t->kernel[1], dest);
}

static void client_end(struct ss_udp_client *c, const char *end)
{
    struct ss_udp_server *u = c->srv;
    struct relay_listener *rl = u->rl;
    struct ss_udp_client **pp = &u->buckets[bucket_of(&c->addr)];
    while (*pp != c) pp = &(*pp)->next;
    *pp = c->next;
    u->nclients--;
    log_client(c, end);
    loop_timer_cancel(u->loop, &c->timer);
    udp_out_close(&c->out);
    if (rl->closed) rl->closed(rl->owner, &c->addr, c->counted_ip);
    /* Its sockets' events may still be in this batch. */
    loop_defer_free(u->loop, c, free);
}

/* The earlier of the idle deadline and --max-session-time. */
static uint64_t client_deadline(const struct ss_udp_client *c)
{
    const struct listener_cfg *lc = cfg_of(c->srv);
    uint64_t idle = c->out.last_ms + lc->udp_timeout_ms;
    uint64_t max = lc->max_session_ms ? c->start_ms + lc->max_session_ms : UINT64_MAX;
    return max < idle ? max : idle;
}

/* Re-armed lazily: relaying only moves last_ms. */
static void client_timer_cb(struct loop *l, struct loop_timer *t)
{
    struct ss_udp_client *c = t->owner;
    const struct listener_cfg *lc = cfg_of(c->srv);
    uint64_t now = loop_now(l);
    if (lc->max_session_ms && now >= c->start_ms + lc->max_session_ms) client_end(c, "max_session_time");
    else if (now >= c->out.last_ms + lc->udp_timeout_ms) client_end(c, "idle_timeout");
    else loop_timer_arm(l, t, client_deadline(c));
}

/* A reply from a destination: ATYP ADDR PORT of its source in front, then
 * sealed as one packet with a fresh salt (udp_out's hook). */
static int reply_cb(void *owner, const struct net_addr *from, uint8_t *p, size_t n)
{
    struct ss_udp_client *c = owner;
    struct ss_udp_server *u = c->srv;
    struct socks_addr src;
    uint8_t hdr[1 + 16 + 2], salt[SS_SALT_MAX], pkt[UDP_DGRAM_MAX + UDP_OUT_HEADROOM];
    front_socks_addr(from, &src);
    size_t h = socks5_write_addr(hdr, sizeof(hdr), &src);
    if (h == 0 || rand_pool_bytes(salt, u->m->salt_len) < 0) return -1;
    memcpy(p - h, hdr, h);
    size_t len = ss_udp_seal(u->m, cfg_of(u)->ss_key, salt, p - h, h + n, pkt, sizeof(pkt));
    if (len == 0) return -1;
    return sendto(u->io[c->sock].fd, pkt, len, 0, &c->addr.u.sa, c->addr.len) < 0 ? -1 : 0;
}

static struct ss_udp_client *client_new(struct ss_udp_server *u, unsigned sock, const struct net_addr *from)
{
    struct relay_listener *rl = u->rl;
    const struct listener_cfg *lc = cfg_of(u);
    int counted_ip = 0;
    if (u->nclients >= SS_UDP_CLIENTS_MAX) {
        u->drop_full++;
        return NULL;
    }
    const char *why = rl->admit ? rl->admit(rl->owner, from, &counted_ip) : NULL;
    if (why) {
        u->drop_refused++;
        if (log_enabled(LOG_DEBUG)) {
            char a[NET_ADDR_STRLEN];
            log_msg(LOG_DEBUG, "listener=%s udp client=%s refused: %s", lc->name,
                    net_addr_format(from, a, sizeof(a)), why);
        }
        return NULL;
    }
    struct ss_udp_client *c = calloc(1, sizeof(*c));
    if (!c) {
        if (rl->closed) rl->closed(rl->owner, from, counted_ip);
        u->drop_full++;
        return NULL;
    }
    c->srv = u;
    c->addr = *from;
    c->sock = sock;
    c->counted_ip = counted_ip;
    c->id = sess_new_id();
    c->start_ms = loop_now(u->loop);
    udp_out_init(&c->out, u->loop, lc, rlistener_resolver(rl), reply_cb, c);
    loop_timer_init(&c->timer, client_timer_cb, c);
    loop_timer_arm(u->loop, &c->timer, client_deadline(c));
    unsigned b = bucket_of(from);
    c->next = u->buckets[b];
    u->buckets[b] = c;
    u->nclients++;
    return c;
}

/* ---- packets from clients ---- */

static void on_packet(struct ss_udp_server *u, unsigned sock, const struct net_addr *from, const uint8_t *pkt,
                      size_t len)
{
    const struct listener_cfg *lc = cfg_of(u);
    uint8_t plain[UDP_DGRAM_MAX];
    struct socks_addr dst;
    struct replay_key key;
    size_t plen, off;
    if (len < SS_UDP_OVERHEAD(u->m)) {
        u->drop_auth++;
        return;
    }
    if (lc->replay) {
        replay_key_of(lc->replay, pkt, u->m->salt_len, &key);
        if (replay_check_key(lc->replay, &key)) {
            u->drop_replay++;
            return;
        }
    }
    enum ss_udp_verdict v = ss_udp_open(u->m, lc->ss_key, pkt, len, plain, sizeof(plain), &plen, &dst, &off);
    if (v == SS_UDP_SHORT || v == SS_UDP_AUTH) {
        u->drop_auth++;
        return;
    }
    /* Authentic from here: the salt is remembered, even for a bad address. */
    if (lc->replay) replay_add_key(lc->replay, &key);
    if (v != SS_UDP_OK || dst.port == 0) {
        u->drop_auth++;
        return;
    }
    struct ss_udp_client *c = find_client(u, from);
    if (!c && !(c = client_new(u, sock, from))) return;
    if (!c->first_dest[0]) socks_addr_format(&dst, c->first_dest, sizeof(c->first_dest));
    udp_out_send(&c->out, &dst, plain + off, plen - off);
}

static void sock_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct ss_udp_server *u = io->owner;
    unsigned sock = (unsigned)(io - u->io);
    uint8_t buf[UDP_DGRAM_MAX];
    (void)l;
    (void)events;
    for (int i = 0; i < SS_UDP_BUDGET; i++) {
        struct net_addr from;
        ssize_t n = udp_recv(io->fd, buf, sizeof(buf), &from, &u->kernel[sock]);
        if (n < 0) {
            if (errno == EMSGSIZE) {
                u->drop_auth++;
                continue;
            }
            return;
        }
        size_t iplen;
        const uint8_t *ip = net_addr_ip(&from, &iplen);
        /* Before any crypto: strangers cost no decryption. */
        if (!acl_check_addr(&cfg_of(u)->client_acl, iplen == 4 ? 4 : 6, ip)) {
            u->drop_refused++;
            continue;
        }
        on_packet(u, sock, &from, buf, (size_t)n);
    }
}

/* ---- start, stop ---- */

struct ss_udp_server *ss_udp_server_start(struct relay_listener *rl, const int *fds, size_t n, char *err,
                                          size_t errlen)
{
    struct ss_udp_server *u = calloc(1, sizeof(*u));
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->rl = rl;
    u->loop = rl->w->loop;
    u->m = ss_method_find(rl->cfg->ss_method);
    for (size_t j = 0; j < n && j < CFG_MAX_LISTEN; j++) {
        u->io[j].fd = -1;
        if (loop_io_add(u->loop, &u->io[j], fds[j], LOOP_READ, sock_cb, u) < 0) {
            snprintf(err, errlen, "epoll: %s", strerror(errno));
            u->nio = j;
            ss_udp_server_stop(u);
            return NULL;
        }
        u->nio = j + 1;
    }
    return u;
}

void ss_udp_server_drain(struct ss_udp_server *u)
{
    if (!u) return;
    /* The fds are dup()s the listener's shared state closes. */
    for (size_t j = 0; j < u->nio; j++)
        if (u->io[j].fd >= 0) loop_io_del(u->loop, &u->io[j]);
    for (size_t b = 0; b < SS_UDP_BUCKETS; b++)
        while (u->buckets[b]) client_end(u->buckets[b], "drain");
}

void ss_udp_server_stop(struct ss_udp_server *u)
{
    if (!u) return;
    ss_udp_server_drain(u);
    uint64_t k = 0;
    for (size_t j = 0; j < CFG_MAX_LISTEN; j++) k += u->kernel[j];
    if ((u->drop_auth || u->drop_replay || u->drop_refused || u->drop_full || k) && log_enabled(LOG_INFO))
        log_msg(LOG_INFO, "listener=%s udp stopped: dropped %llu unauthenticated, %llu replayed, %llu refused, "
                "%llu past the client bound, %llu by the kernel", cfg_of(u)->name,
                (unsigned long long)u->drop_auth, (unsigned long long)u->drop_replay,
                (unsigned long long)u->drop_refused, (unsigned long long)u->drop_full, (unsigned long long)k);
    loop_defer_free(u->loop, u, free);
}
