/* sess_metrics.c - see sess_metrics.h. */
#include "relay/sess_metrics.h"

#include "core/loop.h"
#include "obs/metrics.h"
#include "relay/front.h"
#include "relay/rlistener-t.h"
#include "relay/session.h"

static struct metrics_listener *metrics_of(const struct session *s)
{
    return s->wl->sh->metrics;
}

void sess_metrics_accepted(const struct session *s)
{
    metrics_conn_opened(metrics_of(s));
}

/* The client's handshake failed: the front-end refused it, or (SOCKS) the
 * request was answered with a failure reply after connecting failed. */
static int handshake_failed(const struct session *s, enum sess_end e)
{
    switch (e) {
    case END_HANDSHAKE_TIMEOUT:
    case END_HANDSHAKE_ERROR:
    case END_UNKNOWN_PROTOCOL:
    case END_NO_METHOD:
    case END_AUTH_FAILED:
    case END_SOCKS4_REFUSED:
    case END_BAD_COMMAND:
    case END_BAD_ATYP:
    case END_PROBE:                 /* Shadowsocks: bad key, replayed salt, junk */
        return 1;
    case END_CONNECT_REFUSED:
    case END_CONNECT_TIMEOUT:
    case END_CONNECT_ERROR:
    case END_RESOLVE_FAILED:
    case END_RESOLVE_LIMIT:
    case END_DENIED:
        return s->front == &front_socks;
    default:
        return 0;
    }
}

static enum metrics_refuse refused_as(enum sess_end e)
{
    switch (e) {
    case END_AUTH_FAILED:
    case END_SOCKS4_REFUSED:
        return MREF_AUTH;
    case END_DENIED:
        return MREF_POLICY;
    case END_LIMIT:                 /* the relay's wait queue was full */
        return MREF_LIMIT;
    default:
        return MREF_N;
    }
}

void sess_metrics_closed(const struct session *s)
{
    struct metrics_listener *m = metrics_of(s);
    enum sess_end e = (enum sess_end)s->end;
    if (!m) return;
    int hs = s->front && handshake_failed(s, e);
    int authed = refused_as(e) != MREF_AUTH;
    struct metrics_session_end me = {
        .end = e,
        .end_name = sess_end_name(e),
        .refuse = refused_as(e),
        .hs_proto = hs ? s->front->name : NULL,
        .user = authed && s->front && s->front->user && metrics_users_enabled() ? s->front->user(s) : NULL,
        .up = s->up.bytes,
        .down = s->down.bytes,
        .sent_up = s->up.sent,
        .sent_down = s->down.sent,
        .duration_ms = clock_now_ms() - s->start_ms,
    };
    metrics_session_closed(m, &me);
}

void sess_metrics_server_connected(const struct session *s, uint64_t start_us)
{
    uint64_t now = clock_now_us();
    metrics_server_connected(metrics_of(s), (size_t)s->lb_idx, now > start_us ? now - start_us : 0);
}

void sess_metrics_server_released(const struct session *s, int idx, int failed, int connected)
{
    if (failed) metrics_server_failed(metrics_of(s), (size_t)idx);
    if (connected) metrics_server_closed(metrics_of(s), (size_t)idx);
}
