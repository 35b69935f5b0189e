/* udp_assoc.c - see udp_assoc.h.
 *
 * Sockets. The client side is one UDP socket bound to the IP the client's
 * TCP connection reached, port 0 (the kernel picks one; the reply names
 * it). Destinations get their own unconnected socket per family, made at
 * the first datagram of that family and bound to nothing, so the kernel
 * picks the source address of the route. Why two kinds rather than one
 * socket for everything: the client side is bound to the address the
 * client reached (often loopback or an inside interface), from which most
 * destinations cannot be reached; and with separate sockets the socket a
 * datagram arrives on says whether it is the client's or a reply, with no
 * address comparison to get wrong (a destination on the client's own host
 * sends from the client's IP).
 *
 * Replies are taken only from an address and port the client sent to
 * recently (the last UDP_PEERS of them: "address and port restricted" in
 * NAT terms). So the relay port lets no third party reach the client, and
 * the destination policy checked on the way out covers the way back.
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
#include "net/addr.h"
#include "net/sock.h"
#include "obs/log.h"
#include "policy/acl.h"
#include "proto/socks5.h"
#include "proto/socks5_udp.h"
#include "relay/front.h"
#include "relay/rlistener.h"
#include "relay/session.h"
#include "resolver/resolver.h"

#define UDP_DGRAM_MAX 65536u     /* a datagram read whole, header room included */
#define UDP_BUDGET 64            /* datagrams per socket per wakeup */
#define UDP_PEERS 32             /* destinations whose replies are let in */
#define UDP_NAME_REUSE_MS 30000  /* how long the last resolved name is reused */

struct udp_stats {
    uint64_t up_dgrams, up_bytes, down_dgrams, down_bytes;
    uint64_t drop_stranger;      /* client side: not from the client */
    uint64_t drop_frag;          /* FRAG != 0 */
    uint64_t drop_bad;           /* malformed header, port 0, too big */
    uint64_t drop_denied;        /* destination policy */
    uint64_t drop_dns;           /* name did not resolve, or a lookup was already running */
    uint64_t drop_send;          /* sendto failed (full send buffer: a flood) */
    uint64_t drop_unsolicited;   /* a reply from where the client never sent */
    uint32_t kernel[3];          /* SO_RXQ_OVFL of the client, IPv4 and IPv6 sockets */
};

struct udp_assoc {
    struct session *s;
    struct loop *loop;
    struct loop_io cio;                  /* client side */
    struct loop_io dio[2];               /* destinations: [0] IPv4, [1] IPv6; fd -1 until used */
    struct loop_timer timer;
    uint64_t last_ms;                    /* last datagram relayed, either way */
    struct socks5_udp_peer peer;         /* who may send into the association */
    struct net_addr client;              /* where replies go; len 0 until the client sent */
    struct net_addr peers[UDP_PEERS];    /* ring of destinations sent to */
    unsigned npeers, next_peer;
    /* One datagram waiting for its name to resolve. */
    struct resolver_query *rq;
    uint8_t *pending;
    size_t pending_len;
    uint16_t pending_port;
    char pending_host[256];
    /* The last name resolved and the address used for it. */
    char reuse_host[256];
    struct net_addr reuse_addr;
    uint64_t reuse_ms;
    char first_dest[SOCKS_ADDR_FMT_MAX]; /* for the log: where the first datagram went */
    struct udp_stats st;
};

static const struct listener_cfg *cfg_of(const struct udp_assoc *a) { return a->s->wl->cfg; }

/* ---- deadlines ---- */

static uint64_t deadline(const struct udp_assoc *a)
{
    const struct listener_cfg *c = cfg_of(a);
    uint64_t idle = a->last_ms + c->udp_timeout_ms;
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
    if (now >= a->last_ms + c->udp_timeout_ms) {
        sess_close(a->s, END_IDLE_TIMEOUT);
        return;
    }
    loop_timer_arm(l, t, deadline(a));
}

/* ---- sockets ---- */

/* A non-blocking UDP socket, bound to bind_to unless NULL. IPv6 ones are
 * IPv6-only: IPv4 has its own. Returns the fd, or -1 with errno. */
static int udp_socket(int family, const struct net_addr *bind_to)
{
    int one = 1, fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    /* Each datagram then carries the count of those the kernel dropped
     * for a full receive queue: a flood shows in the log. */
    (void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    if (family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind_to && bind(fd, &bind_to->u.sa, bind_to->len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* One datagram into buf. Returns its length, or -1 with errno (EMSGSIZE:
 * it did not fit and was dropped). *from is the sender; *ovfl is updated
 * when the kernel reports its drop count. */
static ssize_t recv_dgram(int fd, uint8_t *buf, size_t cap, struct net_addr *from, uint32_t *ovfl)
{
    union {
        char b[CMSG_SPACE(sizeof(uint32_t))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { buf, cap };
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    memset(from, 0, sizeof(*from));
    m.msg_name = &from->u;
    m.msg_namelen = sizeof(from->u);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    m.msg_controllen = sizeof(ctl.b);
    ssize_t n = recvmsg(fd, &m, 0);
    if (n < 0) return -1;
    from->len = m.msg_namelen;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) memcpy(ovfl, CMSG_DATA(c), sizeof(*ovfl));
    if (m.msg_flags & MSG_TRUNC) {
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

/* 1: go on reading; 0: the socket is empty (or failing: level-triggered
 * epoll says when to try again). */
static int recv_failed_go_on(struct udp_assoc *a)
{
    if (errno == EMSGSIZE) {
        a->st.drop_bad++;
        return 1;
    }
    return 0;
}

/* ---- client -> destination ---- */

static void dest_cb(struct loop *l, struct loop_io *io, uint32_t events);

static int dest_fd(struct udp_assoc *a, int v6)
{
    struct loop_io *io = &a->dio[v6];
    if (io->fd >= 0) return io->fd;
    int fd = udp_socket(v6 ? AF_INET6 : AF_INET, NULL);
    if (fd < 0) return -1;
    if (loop_io_add(a->loop, io, fd, LOOP_READ, dest_cb, a) < 0) {
        close(fd);
        io->fd = -1;
        return -1;
    }
    return fd;
}

/* An IPv4-mapped IPv6 address becomes plain IPv4: the IPv4 socket sends it
 * and the IPv4 rules judge it. */
static void unmap(struct net_addr *x)
{
    static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (x->u.sa.sa_family != AF_INET6 || memcmp(&x->u.in6.sin6_addr, prefix, 12) != 0) return;
    struct sockaddr_in in;
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    in.sin_port = x->u.in6.sin6_port;
    memcpy(&in.sin_addr, (const uint8_t *)&x->u.in6.sin6_addr + 12, 4);
    memset(x, 0, sizeof(*x));
    memcpy(&x->u.in, &in, sizeof(in));
    x->len = sizeof(in);
}

static void set_port(struct net_addr *x, uint16_t port)
{
    if (x->u.sa.sa_family == AF_INET) x->u.in.sin_port = htons(port);
    else x->u.in6.sin6_port = htons(port);
}

static int is_peer(const struct udp_assoc *a, const struct net_addr *x)
{
    for (unsigned i = 0; i < a->npeers; i++)
        if (net_addr_equal(&a->peers[i], x)) return 1;
    return 0;
}

static void remember_peer(struct udp_assoc *a, const struct net_addr *x)
{
    if (is_peer(a, x)) return;
    a->peers[a->next_peer] = *x;
    a->next_peer = (a->next_peer + 1) % UDP_PEERS;
    if (a->npeers < UDP_PEERS) a->npeers++;
}

/* host: the name the client gave (NULL for an address), which name rules
 * of the destination policy match. */
static int dest_allowed(const struct udp_assoc *a, const char *host, const struct net_addr *to)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(to, &len);
    return acl_check_dest(&cfg_of(a)->dest_acl, host, len == 4 ? 4 : 6, ip, net_addr_port(to));
}

static void send_up(struct udp_assoc *a, const struct net_addr *to, const char *host, const uint8_t *p, size_t n)
{
    if (!dest_allowed(a, host, to)) {
        a->st.drop_denied++;
        return;
    }
    int fd = dest_fd(a, to->u.sa.sa_family == AF_INET6);
    if (fd < 0 || sendto(fd, p, n, 0, &to->u.sa, to->len) < 0) {
        a->st.drop_send++;
        return;
    }
    remember_peer(a, to);
    a->st.up_dgrams++;
    a->st.up_bytes += n;
    a->last_ms = loop_now(a->loop);
}

static void resolved_cb(void *arg, int status, const struct resolved *res)
{
    struct udp_assoc *a = arg;
    struct net_addr to;
    size_t i;
    a->rq = NULL;
    for (i = 0; i < res->n; i++) {
        net_addr_from_sockaddr(&to, (const struct sockaddr *)&res->addr[i], res->len[i]);
        unmap(&to);
        if (dest_allowed(a, a->pending_host, &to)) break;
    }
    if (status != RESOLVER_OK || res->n == 0) {
        a->st.drop_dns++;
    } else if (i == res->n) {
        a->st.drop_denied++;
    } else {
        memcpy(a->reuse_host, a->pending_host, sizeof(a->reuse_host));
        a->reuse_addr = to;
        a->reuse_ms = loop_now(a->loop);
        send_up(a, &to, a->pending_host, a->pending, a->pending_len);
    }
    free(a->pending);
    a->pending = NULL;
}

/* A name: denied names never reach the resolver; the last name resolved
 * is reused for a while, so that a stream of datagrams to one name does
 * not wait for a lookup each (the resolver's cache answers only through the
 * loop). One lookup at a time: a datagram that needs another while one
 * runs is dropped, never queued. */
static void send_to_name(struct udp_assoc *a, const char *host, uint16_t port, const uint8_t *p, size_t n)
{
    const struct listener_cfg *c = cfg_of(a);
    if (acl_check_dest_name(&c->dest_acl, host, port) == ACL_DENY) {
        a->st.drop_denied++;
        return;
    }
    if (a->reuse_host[0] && strcmp(a->reuse_host, host) == 0 && loop_now(a->loop) - a->reuse_ms < UDP_NAME_REUSE_MS) {
        struct net_addr to = a->reuse_addr;
        set_port(&to, port);
        send_up(a, &to, host, p, n);
        return;
    }
    struct resolver *r = rlistener_resolver(a->s->wl);
    if (a->rq || !r || !(a->pending = malloc(n ? n : 1))) {
        a->st.drop_dns++;
        return;
    }
    memcpy(a->pending, p, n);
    a->pending_len = n;
    a->pending_port = port;
    snprintf(a->pending_host, sizeof(a->pending_host), "%s", host);
    a->rq = resolver_lookup(r, host, port, c->prefer_ipv6 ? RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4,
                            resolved_cb, a);
    if (!a->rq) {
        free(a->pending);
        a->pending = NULL;
        a->st.drop_dns++;
    }
}

static void addr_from_socks(const struct socks_addr *d, struct net_addr *to)
{
    memset(to, 0, sizeof(*to));
    if (d->atyp == SOCKS_ATYP_IPV4) {
        to->u.in.sin_family = AF_INET;
        memcpy(&to->u.in.sin_addr, d->ip, 4);
        to->u.in.sin_port = htons(d->port);
        to->len = sizeof(to->u.in);
    } else {
        to->u.in6.sin6_family = AF_INET6;
        memcpy(&to->u.in6.sin6_addr, d->ip, 16);
        to->u.in6.sin6_port = htons(d->port);
        to->len = sizeof(to->u.in6);
        unmap(to);
    }
}

static void on_client_dgram(struct udp_assoc *a, const uint8_t *buf, size_t len)
{
    struct socks_addr dst;
    struct net_addr to;
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
    if (dst.atyp == SOCKS_ATYP_DOMAIN) {
        send_to_name(a, dst.host, dst.port, buf + off, len - off);
        return;
    }
    addr_from_socks(&dst, &to);
    send_up(a, &to, NULL, buf + off, len - off);
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
        ssize_t n = recv_dgram(io->fd, buf, sizeof(buf), &from, &a->st.kernel[0]);
        if (n < 0) {
            if (recv_failed_go_on(a)) continue;
            return;
        }
        if (!from_client(a, &from)) {
            a->st.drop_stranger++;
            continue;
        }
        on_client_dgram(a, buf, (size_t)n);
    }
}

/* ---- destination -> client ---- */

static void dest_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct udp_assoc *a = io->owner;
    uint8_t buf[UDP_DGRAM_MAX];
    uint8_t *payload = buf + SOCKS5_UDP_REPLY_HDR_MAX;   /* the header goes in front */
    (void)l;
    (void)events;
    for (int i = 0; i < UDP_BUDGET; i++) {
        struct net_addr from;
        struct socks_addr src;
        uint8_t hdr[SOCKS5_UDP_REPLY_HDR_MAX];
        ssize_t n = recv_dgram(io->fd, payload, sizeof(buf) - SOCKS5_UDP_REPLY_HDR_MAX, &from,
                               &a->st.kernel[io == &a->dio[0] ? 1 : 2]);
        if (n < 0) {
            if (recv_failed_go_on(a)) continue;
            return;
        }
        if (!a->client.len || !is_peer(a, &from)) {
            a->st.drop_unsolicited++;
            continue;
        }
        front_socks_addr(&from, &src);
        size_t h = socks5_udp_build_header(hdr, sizeof(hdr), &src);
        memcpy(payload - h, hdr, h);
        if (h == 0 || sendto(a->cio.fd, payload - h, h + (size_t)n, 0, &a->client.u.sa, a->client.len) < 0) {
            a->st.drop_send++;
            continue;
        }
        a->st.down_dgrams++;
        a->st.down_bytes += (uint64_t)n;
        a->last_ms = loop_now(a->loop);
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
    a->cio.fd = a->dio[0].fd = a->dio[1].fd = -1;
    const uint8_t *tcp_ip = net_addr_ip(&s->client, &iplen);
    socks5_udp_peer_init(&a->peer, declared, iplen == 4 ? 4 : 6, tcp_ip);
    /* A declared address other than the TCP client's is a client too. */
    if (!acl_check_addr(&c->client_acl, a->peer.family, a->peer.ip)) {
        *rep = SOCKS5_REP_NOT_ALLOWED;
        *why = END_DENIED;
        free(a);
        return NULL;
    }
    set_port(&local, 0);
    int fd = udp_socket(local.u.sa.sa_family, &local);
    if (fd < 0) {
        free(a);
        return NULL;
    }
    if (loop_io_add(l, &a->cio, fd, LOOP_READ, client_cb, a) < 0 || sock_local_addr(fd, &local) < 0) {
        if (a->cio.fd >= 0) loop_io_del(l, &a->cio);
        close(fd);
        free(a);
        return NULL;
    }
    front_socks_addr(&local, bound);
    loop_timer_init(&a->timer, timer_cb, a);
    a->last_ms = loop_now(l);
    loop_timer_arm(l, &a->timer, deadline(a));
    return a;
}

void udp_assoc_free(struct udp_assoc *a)
{
    if (!a) return;
    loop_timer_cancel(a->loop, &a->timer);
    if (a->rq) resolver_cancel(a->rq);
    a->rq = NULL;
    free(a->pending);
    a->pending = NULL;
    if (a->cio.fd >= 0) loop_io_close(a->loop, &a->cio);
    for (int i = 0; i < 2; i++)
        if (a->dio[i].fd >= 0) loop_io_close(a->loop, &a->dio[i]);
    loop_defer_free(a->loop, a, free);
}

void udp_assoc_log_fields(const struct udp_assoc *a, char *out, size_t outlen)
{
    const struct udp_stats *t = &a->st;
    char dest[SOCKS_ADDR_FMT_MAX];
    /* The first destination may be a client's name: sanitised. */
    log_sanitize(dest, sizeof(dest), a->first_dest[0] ? a->first_dest : "-");
    /* The name last: a line cut short at the log's bound loses it first. */
    snprintf(out, outlen,
             "udp_up_dgrams=%llu udp_up_bytes=%llu udp_down_dgrams=%llu udp_down_bytes=%llu "
             "udp_drop_stranger=%llu udp_drop_frag=%llu udp_drop_bad=%llu udp_drop_denied=%llu udp_drop_dns=%llu "
             "udp_drop_send=%llu udp_drop_unsolicited=%llu udp_drop_kernel=%llu udp_dest=%s",
             (unsigned long long)t->up_dgrams, (unsigned long long)t->up_bytes,
             (unsigned long long)t->down_dgrams, (unsigned long long)t->down_bytes,
             (unsigned long long)t->drop_stranger, (unsigned long long)t->drop_frag,
             (unsigned long long)t->drop_bad, (unsigned long long)t->drop_denied, (unsigned long long)t->drop_dns,
             (unsigned long long)t->drop_send, (unsigned long long)t->drop_unsolicited,
             (unsigned long long)t->kernel[0] + t->kernel[1] + t->kernel[2], dest);
}
