/* udp_assoc.c - see udp_assoc.h.
 *
 * The client side is one UDP socket bound to the IP the client's TCP
 * connection reached, port 0 (the kernel picks one; the reply names it).
 * Why not the destinations' sockets too: the client's address is often
 * loopback or an inside interface, from which most destinations cannot be
 * reached; and with separate sockets the socket a datagram arrives on says
 * whether it is the client's or a reply, with no address comparison to get
 * wrong (a destination on the client's own host sends from the client's
 * IP).
 *
 * What is behind it: on a SOCKS listener the destinations themselves
 * (relay/udp_out.h); on ss-local -u the ss-server, each datagram sealed as
 * one Shadowsocks UDP packet (proto/ss_udp.h) on a socket of the
 * association's own, so that the ss-server's NAT tells associations apart
 * by their source port, as shadowsocks-libev's ss-local does.
 *
 * Work per wakeup is capped (UDP_BUDGET datagrams per socket); a flood
 * beyond what the sockets can take is dropped by the kernel (counted
 * through SO_RXQ_OVFL) or by a full send buffer (EAGAIN, counted), never
 * queued here.
 */
#include "relay/udp_assoc.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/loop.h"
#include "crypto/rand_pool.h"
#include "net/addr.h"
#include "net/sock.h"
#include "net/udp.h"
#include "obs/log.h"
#include "policy/acl.h"
#include "proto/socks5.h"
#include "proto/socks5_udp.h"
#include "proto/ss_udp.h"
#include "relay/front.h"
#include "relay/rlistener.h"
#include "relay/session.h"
#include "relay/udp_out.h"
#include "resolver/resolver.h"

#define UDP_BUDGET 64            /* datagrams per socket per wakeup */

/* What the client side drops; udp_out counts the rest. */
struct udp_client_stats {
    uint64_t drop_stranger;      /* not from the client */
    uint64_t drop_frag;          /* FRAG != 0 */
    uint64_t drop_bad;           /* malformed header, port 0, too big */
    uint64_t drop_auth;          /* ss-local: a reply that did not authenticate */
    uint32_t kernel;             /* SO_RXQ_OVFL of the client's socket */
};

/* ss-local -u: the ss-server, and the association's socket to it. */
struct udp_ss {
    const struct ss_method *m;
    const uint8_t *key;
    struct net_addr server;              /* len 0 while its name resolves */
    struct resolver_query *rq;
    struct loop_io io;
};

struct udp_assoc {
    struct session *s;
    struct loop *loop;
    struct loop_io cio;                  /* client side */
    struct loop_timer timer;
    struct socks5_udp_peer peer;         /* who may send into the association */
    struct net_addr client;              /* where replies go; len 0 until the client sent */
    /* The outside: destinations, or with ss (non-NULL) the ss-server. The
     * counters of `out` are the association's either way. */
    struct udp_out out;
    struct udp_ss *ss;
    char first_dest[SOCKS_ADDR_FMT_MAX]; /* for the log: where the first datagram went */
    struct udp_client_stats st;
};

static const struct listener_cfg *cfg_of(const struct udp_assoc *a) { return a->s->wl->cfg; }

/* ---- deadlines ---- */

static uint64_t deadline(const struct udp_assoc *a)
{
    const struct listener_cfg *c = cfg_of(a);
    uint64_t idle = a->out.last_ms + c->udp_timeout_ms;
    uint64_t max = c->max_session_ms ? a->s->start_ms + c->max_session_ms : UINT64_MAX;
    return max < idle ? max : idle;
}

/* Re-armed lazily: relaying only moves last_ms. */
static void timer_cb(struct loop *l, struct loop_timer *t)
{
    struct udp_assoc *a = t->owner;
    const struct listener_cfg *c = cfg_of(a);
    uint64_t now = loop_now(l);
    if (c->max_session_ms && now >= a->s->start_ms + c->max_session_ms) {
        sess_close(a->s, END_MAX_SESSION_TIME);
        return;
    }
    if (now >= a->out.last_ms + c->udp_timeout_ms) {
        sess_close(a->s, END_IDLE_TIMEOUT);
        return;
    }
    loop_timer_arm(l, t, deadline(a));
}

/* ---- replies to the client ---- */

/* A reply with the SOCKS5 UDP header naming its source (udp_out's hook). */
static int reply_direct(void *owner, const struct net_addr *from, uint8_t *p, size_t n)
{
    struct udp_assoc *a = owner;
    struct socks_addr src;
    uint8_t hdr[SOCKS5_UDP_REPLY_HDR_MAX];
    if (!a->client.len) return -1;
    front_socks_addr(from, &src);
    size_t h = socks5_udp_build_header(hdr, sizeof(hdr), &src);
    if (h == 0) return -1;
    memcpy(p - h, hdr, h);
    return sendto(a->cio.fd, p - h, h + n, 0, &a->client.u.sa, a->client.len) < 0 ? -1 : 0;
}

/* ---- ss-local -u: through the ss-server ---- */

static void ss_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct udp_assoc *a = io->owner;
    uint8_t pkt[UDP_DGRAM_MAX], plain[UDP_DGRAM_MAX];
    (void)l;
    (void)events;
    for (int i = 0; i < UDP_BUDGET; i++) {
        struct net_addr from;
        struct socks_addr src;
        size_t plen, off;
        ssize_t n = udp_recv(io->fd, pkt, sizeof(pkt), &from, &a->out.st.kernel[0]);
        if (n < 0) {
            if (errno == EMSGSIZE) continue;
            return;
        }
        if (!net_addr_equal(&from, &a->ss->server)) {
            a->out.st.drop_unsolicited++;
            continue;
        }
        /* The plaintext (ATYP ADDR PORT DATA) goes 3 bytes in: RSV RSV
         * FRAG in front make it the SOCKS5 UDP reply. */
        if (ss_udp_open(a->ss->m, a->ss->key, pkt, (size_t)n, plain + 3, sizeof(plain) - 3, &plen, &src, &off) !=
            SS_UDP_OK) {
            a->st.drop_auth++;
            continue;
        }
        plain[0] = plain[1] = plain[2] = 0;
        if (!a->client.len || sendto(a->cio.fd, plain, plen + 3, 0, &a->client.u.sa, a->client.len) < 0) {
            a->out.st.drop_send++;
            continue;
        }
        a->out.st.down_dgrams++;
        a->out.st.down_bytes += plen - off;
        a->out.last_ms = loop_now(a->loop);
    }
}

static void ss_resolved_cb(void *arg, int status, const struct resolved *res)
{
    struct udp_assoc *a = arg;
    a->ss->rq = NULL;
    if (status != RESOLVER_OK || res->n == 0) return;     /* datagrams count as drop_dns */
    net_addr_from_sockaddr(&a->ss->server, (const struct sockaddr *)&res->addr[0], res->len[0]);
    udp_unmap(&a->ss->server);
}

static void ss_resolve(struct udp_assoc *a);

static int ss_socket(struct udp_assoc *a)
{
    struct udp_ss *x = a->ss;
    if (x->io.fd >= 0) return x->io.fd;
    int fd = udp_socket(x->server.u.sa.sa_family, NULL, 0);
    if (fd < 0) return -1;
    if (loop_io_add(a->loop, &x->io, fd, LOOP_READ, ss_cb, a) < 0) {
        close(fd);
        x->io.fd = -1;
        return -1;
    }
    return fd;
}

/* [p, p + n) is ATYP ADDR PORT DATA, the Shadowsocks payload as it is;
 * data_len its DATA. The destination policy of ss-local applies here, as
 * for its TCP clients; the ss-server resolves names. */
static void ss_send(struct udp_assoc *a, const struct socks_addr *dst, const uint8_t *p, size_t n, size_t data_len)
{
    struct udp_ss *x = a->ss;
    uint8_t pkt[UDP_DGRAM_MAX], salt[SS_SALT_MAX];
    if (!udp_out_allowed(cfg_of(a), dst)) {
        a->out.st.drop_denied++;
        return;
    }
    if (!x->server.len) {
        a->out.st.drop_dns++;
        ss_resolve(a);            /* the last lookup failed: try again */
        return;
    }
    size_t len = rand_pool_bytes(salt, x->m->salt_len) < 0 ? 0
                                                            : ss_udp_seal(x->m, x->key, salt, p, n, pkt, sizeof(pkt));
    int fd = len ? ss_socket(a) : -1;
    if (fd < 0 || sendto(fd, pkt, len, 0, &x->server.u.sa, x->server.len) < 0) {
        a->out.st.drop_send++;
        return;
    }
    a->out.st.up_dgrams++;
    a->out.st.up_bytes += data_len;
    a->out.last_ms = loop_now(a->loop);
}

/* The ss-server's name, looked up in the background; datagrams meanwhile
 * are dropped (drop_dns). */
static void ss_resolve(struct udp_assoc *a)
{
    const struct listener_cfg *c = cfg_of(a);
    struct resolver *r = rlistener_resolver(a->s->wl);
    if (a->ss->rq || !r) return;
    a->ss->rq = resolver_lookup(r, c->ss_server.host, c->ss_server.port,
                                c->prefer_ipv6 ? RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4, ss_resolved_cb, a);
}

static struct udp_ss *ss_open(struct udp_assoc *a, const struct listener_cfg *c)
{
    struct udp_ss *x = calloc(1, sizeof(*x));
    if (!x) return NULL;
    x->m = ss_method_find(c->ss_method);
    x->key = c->ss_key;
    x->io.fd = -1;
    a->ss = x;
    if (net_addr_from_literal(c->ss_server.host, c->ss_server.port, &x->server) == 0) return x;
    memset(&x->server, 0, sizeof(x->server));
    ss_resolve(a);
    return x;
}

static void ss_close(struct udp_assoc *a)
{
    if (!a->ss) return;
    if (a->ss->rq) resolver_cancel(a->ss->rq);
    if (a->ss->io.fd >= 0) loop_io_close(a->loop, &a->ss->io);
    /* Its io may have an event later in this batch (the loop skips it:
     * fd -1), so the memory goes after the batch. */
    loop_defer_free(a->loop, a->ss, free);
    a->ss = NULL;
}

/* ---- client -> outside ---- */

static void on_client_dgram(struct udp_assoc *a, const uint8_t *buf, size_t len)
{
    struct socks_addr dst;
    size_t off;
    switch (socks5_udp_parse(buf, len, &dst, &off)) {
    case SOCKS5_UDP_OK:
        break;
    case SOCKS5_UDP_FRAG:
        a->st.drop_frag++;
        return;
    default:
        a->st.drop_bad++;
        return;
    }
    if (dst.port == 0) {
        a->st.drop_bad++;
        return;
    }
    if (!a->first_dest[0]) socks_addr_format(&dst, a->first_dest, sizeof(a->first_dest));
    if (a->ss) ss_send(a, &dst, buf + 3, len - 3, len - off);
    else udp_out_send(&a->out, &dst, buf + off, len - off);
}

static int from_client(struct udp_assoc *a, const struct net_addr *from)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(from, &len);
    if (!socks5_udp_peer_accept(&a->peer, len == 4 ? 4 : 6, ip, net_addr_port(from))) return 0;
    if (!a->client.len) a->client = *from;
    return 1;
}

static void client_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct udp_assoc *a = io->owner;
    uint8_t buf[UDP_DGRAM_MAX];
    (void)l;
    (void)events;
    for (int i = 0; i < UDP_BUDGET; i++) {
        struct net_addr from;
        ssize_t n = udp_recv(io->fd, buf, sizeof(buf), &from, &a->st.kernel);
        if (n < 0) {
            if (errno == EMSGSIZE) {
                a->st.drop_bad++;
                continue;
            }
            return;
        }
        if (!from_client(a, &from)) {
            a->st.drop_stranger++;
            continue;
        }
        on_client_dgram(a, buf, (size_t)n);
    }
}

/* ---- life cycle ---- */

struct udp_assoc *udp_assoc_open(struct session *s, const struct socks_addr *declared, struct socks_addr *bound,
                                 uint8_t *rep, enum sess_end *why)
{
    const struct listener_cfg *c = s->wl->cfg;
    struct loop *l = s->wl->w->loop;
    struct net_addr local;
    size_t iplen;
    *rep = SOCKS5_REP_FAIL;
    *why = END_LOCAL_ERROR;
    if (sock_local_addr(s->cio.fd, &local) < 0) return NULL;
    struct udp_assoc *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->s = s;
    a->loop = l;
    a->cio.fd = -1;
    udp_out_init(&a->out, l, c, rlistener_resolver(s->wl), reply_direct, a);
    const uint8_t *tcp_ip = net_addr_ip(&s->client, &iplen);
    socks5_udp_peer_init(&a->peer, declared, iplen == 4 ? 4 : 6, tcp_ip);
    /* A declared address other than the TCP client's is a client too. */
    if (!acl_check_addr(&c->client_acl, a->peer.family, a->peer.ip)) {
        *rep = SOCKS5_REP_NOT_ALLOWED;
        *why = END_DENIED;
        free(a);
        return NULL;
    }
    net_addr_set_port(&local, 0);
    int fd = udp_socket(local.u.sa.sa_family, &local, 0);
    if (fd < 0 || (c->mode == MODE_SS_LOCAL && !ss_open(a, c))) {
        if (fd >= 0) close(fd);
        ss_close(a);
        free(a);
        return NULL;
    }
    if (loop_io_add(l, &a->cio, fd, LOOP_READ, client_cb, a) < 0 || sock_local_addr(fd, &local) < 0) {
        if (a->cio.fd >= 0) loop_io_del(l, &a->cio);
        close(fd);
        ss_close(a);
        free(a);
        return NULL;
    }
    front_socks_addr(&local, bound);
    loop_timer_init(&a->timer, timer_cb, a);
    loop_timer_arm(l, &a->timer, deadline(a));
    return a;
}

void udp_assoc_free(struct udp_assoc *a)
{
    if (!a) return;
    loop_timer_cancel(a->loop, &a->timer);
    udp_out_close(&a->out);
    ss_close(a);
    if (a->cio.fd >= 0) loop_io_close(a->loop, &a->cio);
    loop_defer_free(a->loop, a, free);
}

void udp_assoc_log_fields(const struct udp_assoc *a, char *out, size_t outlen)
{
    const struct udp_out_stats *t = &a->out.st;
    const struct udp_client_stats *c = &a->st;
    char dest[SOCKS_ADDR_FMT_MAX], counts[200], auth[48] = "";
    /* The first destination may be a client's name: sanitised. */
    log_sanitize(dest, sizeof(dest), a->first_dest[0] ? a->first_dest : "-");
    udp_out_format_counts(t, counts, sizeof(counts));
    if (a->ss) snprintf(auth, sizeof(auth), " udp_drop_auth=%llu", (unsigned long long)c->drop_auth);
    /* The name last: a line cut short at the log's bound loses it first. */
    snprintf(out, outlen,
             "%s udp_drop_stranger=%llu udp_drop_frag=%llu udp_drop_bad=%llu udp_drop_denied=%llu "
             "udp_drop_dns=%llu udp_drop_send=%llu udp_drop_unsolicited=%llu%s udp_drop_kernel=%llu udp_dest=%s",
             counts, (unsigned long long)c->drop_stranger, (unsigned long long)c->drop_frag,
             (unsigned long long)c->drop_bad, (unsigned long long)t->drop_denied, (unsigned long long)t->drop_dns,
             (unsigned long long)t->drop_send, (unsigned long long)t->drop_unsolicited,
             auth,
             (unsigned long long)c->kernel + t->kernel[0] + t->kernel[1], dest);
}
