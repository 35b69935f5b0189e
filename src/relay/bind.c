/* bind.c - see bind.h. */
#include "relay/bind.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "net/sock.h"
#include "obs/log.h"
#include "relay/front.h"
#include "relay/rlistener-t.h"
#include "relay/session.h"

/* The local address a packet to `to` would leave from (a UDP socket's
 * connect() asks the routing table and sends nothing). -1 if no route. */
static int address_facing(const struct net_addr *to, struct net_addr *local)
{
    int fd = socket(to->u.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int r = connect(fd, &to->u.sa, to->len) == 0 ? sock_local_addr(fd, local) : -1;
    close(fd);
    return r;
}

static int is_unspecified(const struct net_addr *a)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(a, &len);
    for (size_t i = 0; i < len; i++)
        if (ip[i]) return 0;
    return 1;
}

/* Where to listen: facing the peer the client named, when it named an
 * address; else (a name, or 0.0.0.0 as most clients send) the address the
 * client itself reached, which is what an FTP server is told to use. */
static int listen_address(const struct session *s, struct net_addr *out)
{
    struct net_addr want;
    if (net_addr_from_literal(s->target->host, s->target->port, &want) == 0 && !is_unspecified(&want) &&
        address_facing(&want, out) == 0)
        return 0;
    return sock_local_addr(endpoint_fd(&s->cep), out);
}

void bind_start(struct session *s)
{
    struct net_addr local;
    int fd = -1;
    if (listen_address(s, &local) == 0) {
        net_addr_set_port(&local, 0);
        fd = socket(local.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && (bind(fd, &local.u.sa, local.len) < 0 || listen(fd, 1) < 0 ||
                        sock_local_addr(fd, &local) < 0)) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0 || sess_upstream_register(s, fd) < 0) {
        if (fd >= 0) close(fd);
        sess_connect_failed(s, FAIL_GENERAL, END_LOCAL_ERROR);
        return;
    }
    s->state = SESS_CONNECTING;
    loop_timer_arm_in(s->wl->w->loop, &s->timer, s->wl->cfg->connect_timeout_ms);
    if (s->front && s->front->on_listening) s->front->on_listening(s, &local);
    sess_kick(s);
}

/* --bind-strict: only the address the request named may connect. */
static int peer_expected(const struct session *s, const struct net_addr *peer)
{
    struct net_addr want;
    size_t a, b;
    if (!s->wl->cfg->bind_strict) return 1;
    if (net_addr_from_literal(s->target->host, 0, &want) < 0 || is_unspecified(&want)) return 1;
    const uint8_t *x = net_addr_ip(&want, &a), *y = net_addr_ip(peer, &b);
    return a == b && memcmp(x, y, a) == 0;
}

void bind_ready(struct session *s, uint32_t events)
{
    struct net_addr peer;
    (void)events;
    for (;;) {
        peer.len = sizeof(peer.u);
        int fd = accept4(endpoint_fd(&s->uep), &peer.u.sa, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
            sess_connect_failed(s, FAIL_GENERAL, END_LOCAL_ERROR);
            return;
        }
        if (!peer_expected(s, &peer)) {
            char a[NET_ADDR_STRLEN];
            log_info("sess=%llu listener=%s bind: refused a connection from %s (--bind-strict)",
                     (unsigned long long)s->id, s->wl->cfg->name, net_addr_format(&peer, a, sizeof(a)));
            sock_set_linger0(fd);
            close(fd);
            continue;
        }
        /* Exactly one: the listening socket goes, the connection takes its place. */
        endpoint_close(&s->uep, 0);
        sock_set_nodelay(fd);
        s->upstream = peer;
        sess_relay_start(s, fd);
        return;
    }
}

void bind_timeout(struct session *s)
{
    endpoint_close(&s->uep, 0);
    sess_connect_failed(s, FAIL_TIMEOUT, END_CONNECT_TIMEOUT);
}
