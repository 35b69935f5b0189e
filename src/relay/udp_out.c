/* udp_out.c - see udp_out.h. */
#include "relay/udp_out.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "net/udp.h"
#include "policy/acl.h"
#include "resolver/resolver.h"

#define UDP_OUT_BUDGET 64            /* datagrams per socket per wakeup */
#define UDP_NAME_REUSE_MS 30000      /* how long the last resolved name is reused */

static void dest_cb(struct loop *l, struct loop_io *io, uint32_t events);

void udp_out_init(struct udp_out *o, struct loop *l, const struct listener_cfg *cfg, struct resolver *r,
                  udp_out_reply_fn *reply, void *owner)
{
    memset(o, 0, sizeof(*o));
    o->loop = l;
    o->cfg = cfg;
    o->resolver = r;
    o->reply = reply;
    o->owner = owner;
    o->dio[0].fd = o->dio[1].fd = -1;
    o->last_ms = loop_now(l);
}

static int dest_fd(struct udp_out *o, int v6)
{
    struct loop_io *io = &o->dio[v6];
    if (io->fd >= 0) return io->fd;
    int fd = udp_socket(v6 ? AF_INET6 : AF_INET, NULL, 0);
    if (fd < 0) return -1;
    if (loop_io_add(o->loop, io, fd, LOOP_READ, dest_cb, o) < 0) {
        close(fd);
        io->fd = -1;
        return -1;
    }
    return fd;
}

static int is_peer(const struct udp_out *o, const struct net_addr *x)
{
    for (unsigned i = 0; i < o->npeers; i++)
        if (net_addr_equal(&o->peers[i], x)) return 1;
    return 0;
}

static void remember_peer(struct udp_out *o, const struct net_addr *x)
{
    if (is_peer(o, x)) return;
    o->peers[o->next_peer] = *x;
    o->next_peer = (o->next_peer + 1) % UDP_OUT_PEERS;
    if (o->npeers < UDP_OUT_PEERS) o->npeers++;
}

/* host: the name the client gave (NULL for an address), which name rules
 * of the destination policy match. */
static int allowed_at(const struct listener_cfg *cfg, const char *host, const struct net_addr *to)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(to, &len);
    return acl_check_dest(&cfg->dest_acl, host, len == 4 ? 4 : 6, ip, net_addr_port(to));
}


static void send_up(struct udp_out *o, const struct net_addr *to, const char *host, const uint8_t *p, size_t n)
{
    if (!allowed_at(o->cfg, host, to)) {
        o->st.drop_denied++;
        return;
    }
    int fd = dest_fd(o, to->u.sa.sa_family == AF_INET6);
    if (fd < 0 || sendto(fd, p, n, 0, &to->u.sa, to->len) < 0) {
        o->st.drop_send++;
        return;
    }
    remember_peer(o, to);
    o->st.up_dgrams++;
    o->st.up_bytes += n;
    o->last_ms = loop_now(o->loop);
}

static void resolved_cb(void *arg, int status, const struct resolved *res)
{
    struct udp_out *o = arg;
    struct net_addr to;
    size_t i;
    o->rq = NULL;
    for (i = 0; i < res->n; i++) {
        net_addr_from_sockaddr(&to, (const struct sockaddr *)&res->addr[i], res->len[i]);
        udp_unmap(&to);
        if (allowed_at(o->cfg, o->pending_host, &to)) break;
    }
    if (status != RESOLVER_OK || res->n == 0) {
        o->st.drop_dns++;
    } else if (i == res->n) {
        o->st.drop_denied++;
    } else {
        memcpy(o->reuse_host, o->pending_host, sizeof(o->reuse_host));
        o->reuse_addr = to;
        o->reuse_ms = loop_now(o->loop);
        send_up(o, &to, o->pending_host, o->pending, o->pending_len);
    }
    free(o->pending);
    o->pending = NULL;
}

/* Denied names never reach the resolver; the last name resolved is reused
 * for a while, so that a stream of datagrams to one name does not wait for
 * a lookup each (the resolver's cache answers only through the loop). */
static void send_to_name(struct udp_out *o, const char *host, uint16_t port, const uint8_t *p, size_t n)
{
    if (acl_check_dest_name(&o->cfg->dest_acl, host, port) == ACL_DENY) {
        o->st.drop_denied++;
        return;
    }
    if (o->reuse_host[0] && strcmp(o->reuse_host, host) == 0 && loop_now(o->loop) - o->reuse_ms < UDP_NAME_REUSE_MS) {
        struct net_addr to = o->reuse_addr;
        net_addr_set_port(&to, port);
        send_up(o, &to, host, p, n);
        return;
    }
    if (o->rq || !o->resolver || !(o->pending = malloc(n ? n : 1))) {
        o->st.drop_dns++;
        return;
    }
    memcpy(o->pending, p, n);
    o->pending_len = n;
    snprintf(o->pending_host, sizeof(o->pending_host), "%s", host);
    o->rq = resolver_lookup(o->resolver, host, port, o->cfg->prefer_ipv6 ? RESOLVER_PREFER_IPV6 : RESOLVER_PREFER_IPV4,
                            resolved_cb, o);
    if (!o->rq) {
        free(o->pending);
        o->pending = NULL;
        o->st.drop_dns++;
    }
}

static void addr_from_socks(const struct socks_addr *d, struct net_addr *to)
{
    net_addr_from_ip(to, d->atyp == SOCKS_ATYP_IPV4 ? 4 : 6, d->ip, d->port);
    udp_unmap(to);
}

int udp_out_allowed(const struct listener_cfg *cfg, const struct socks_addr *dst)
{
    struct net_addr to;
    if (dst->atyp == SOCKS_ATYP_DOMAIN) return acl_check_dest_name(&cfg->dest_acl, dst->host, dst->port) != ACL_DENY;
    addr_from_socks(dst, &to);
    return allowed_at(cfg, NULL, &to);
}

void udp_out_send(struct udp_out *o, const struct socks_addr *dst, const uint8_t *p, size_t n)
{
    struct net_addr to;
    if (dst->atyp == SOCKS_ATYP_DOMAIN) {
        send_to_name(o, dst->host, dst->port, p, n);
        return;
    }
    addr_from_socks(dst, &to);
    send_up(o, &to, NULL, p, n);
}

static void dest_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct udp_out *o = io->owner;
    uint8_t buf[UDP_DGRAM_MAX];
    uint8_t *payload = buf + UDP_OUT_HEADROOM;
    (void)l;
    (void)events;
    for (int i = 0; i < UDP_OUT_BUDGET; i++) {
        struct net_addr from;
        ssize_t n = udp_recv(io->fd, payload, sizeof(buf) - UDP_OUT_HEADROOM - UDP_OUT_TAILROOM, &from,
                             &o->st.kernel[io == &o->dio[0] ? 0 : 1]);
        if (n < 0) {
            if (errno == EMSGSIZE) continue;     /* too big for any reply: the kernel dropped it */
            return;
        }
        if (!is_peer(o, &from)) {
            o->st.drop_unsolicited++;
            continue;
        }
        if (o->reply(o->owner, &from, payload, (size_t)n) < 0) {
            o->st.drop_send++;
            continue;
        }
        o->st.down_dgrams++;
        o->st.down_bytes += (uint64_t)n;
        o->last_ms = loop_now(o->loop);
    }
}

void udp_out_close(struct udp_out *o)
{
    if (o->rq) resolver_cancel(o->rq);
    o->rq = NULL;
    free(o->pending);
    o->pending = NULL;
    for (int i = 0; i < 2; i++)
        if (o->dio[i].fd >= 0) loop_io_close(o->loop, &o->dio[i]);
}

void udp_out_format_counts(const struct udp_out_stats *t, char *out, size_t outlen)
{
    snprintf(out, outlen, "udp_up_dgrams=%llu udp_up_bytes=%llu udp_down_dgrams=%llu udp_down_bytes=%llu",
             (unsigned long long)t->up_dgrams, (unsigned long long)t->up_bytes,
             (unsigned long long)t->down_dgrams, (unsigned long long)t->down_bytes);
}
