/* mux_server.c - see mux_server.h.
 *
 * Each accepted connection is one mux_conn on this worker. A stream the
 * peer opens is admitted like a connection (the listener's ACLs and
 * limits, with the connection's client address) and becomes a session
 * whose client endpoint is the stream: from there it is a relay session
 * (balancer, retries, health) or, with --dynamic, one whose target is the
 * address the stream starts with. The stream's ACK waits for the upstream
 * to connect, so a peer learns of a failure as a reset.
 */
#include "relay/mux_server.h"

#include <stdlib.h>
#include <unistd.h>

#include "obs/log.h"
#include "relay/mux_conn.h"
#include "relay/rlistener.h"
#include "relay/session.h"

struct mux_in {
    struct mux_in *prev, *next;
    struct relay_listener *rl;
    struct mux_conn *c;
    struct net_addr peer;
    int counted_ip;
};

static int bind_stream(struct endpoint *e, void *arg)
{
    mux_stream_bind(arg, e);
    return 0;
}

static int in_opened(void *owner, struct mux_conn *c, struct mux_stream *st)
{
    struct mux_in *m = owner;
    struct relay_listener *rl = m->rl;
    int counted_ip = 0;
    const char *refused = rl->admit(rl->owner, &m->peer, &counted_ip);
    if (refused) {
        char a[NET_ADDR_STRLEN];
        log_info("listener=%s mux=%llu stream=%u client=%s refused=%s", rl->cfg->name,
                 (unsigned long long)mux_conn_id(c), mux_stream_id(st), net_addr_format(&m->peer, a, sizeof(a)),
                 refused);
        return -1;
    }
    if (sess_accept_endpoint(rl, &m->peer, counted_ip, bind_stream, st) < 0) {
        rlistener_session_closed(rl, &m->peer, counted_ip);
        return -1;
    }
    return 0;
}

/* Accepted connections are up from the start. */
static void in_up(void *owner, struct mux_conn *c, int err)
{
    (void)owner;
    (void)c;
    (void)err;
}

static void in_closed(void *owner, struct mux_conn *c, const char *why)
{
    struct mux_in *m = owner;
    struct relay_listener *rl = m->rl;
    (void)c;
    (void)why;
    if (m->prev) m->prev->next = m->next;
    else rl->mux_in = m->next;
    if (m->next) m->next->prev = m->prev;
    rlistener_session_closed(rl, &m->peer, m->counted_ip);
    free(m);
}

static const struct mux_conn_ops in_ops = { in_opened, in_up, in_closed };

int mux_server_accept(struct relay_listener *rl, int fd, const struct net_addr *peer, int counted_ip)
{
    const struct listener_cfg *lc = rl->cfg;
    struct mux_conn_cfg cfg = {
        .role = YAMUX_SERVER, .max_streams = lc->mux_max_streams, .keepalive_ms = lc->mux_keepalive_ms,
        .listener = lc->name,
    };
    struct mux_in *m = calloc(1, sizeof(*m));
    if (!m) {
        close(fd);
        return -1;
    }
    m->rl = rl;
    m->peer = *peer;
    m->counted_ip = counted_ip;
    m->c = mux_conn_new(rl->w->loop, fd, 0, peer, &cfg, &in_ops, m);
    if (!m->c) {
        free(m);
        return -1;
    }
    m->next = rl->mux_in;
    if (rl->mux_in) rl->mux_in->prev = m;
    rl->mux_in = m;
    return 0;
}

void mux_server_drain(struct relay_listener *rl)
{
    struct mux_in *m = rl->mux_in, *next;
    for (; m; m = next) {
        next = m->next;          /* goaway closes an idle connection (later, on a timer) */
        mux_conn_goaway(m->c);
    }
}

void mux_server_close_all(struct relay_listener *rl)
{
    while (rl->mux_in) mux_conn_close(rl->mux_in->c, "listener closed");
}
