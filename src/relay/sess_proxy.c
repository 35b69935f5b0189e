/* sess_proxy.c - see sess_proxy.h. */
#include "relay/sess_proxy.h"

#include <string.h>

#include "net/sock.h"
#include "proto/proxy_proto.h"
#include "relay/pipe.h"
#include "relay/rlistener.h"

static void to_pp(struct pp_addr *out, const struct net_addr *a)
{
    size_t len;
    const uint8_t *ip = a->len ? net_addr_ip(a, &len) : NULL;
    memset(out, 0, sizeof(*out));
    if (!ip) return;                    /* family 0: sent as UNKNOWN / UNSPEC */
    out->family = len == 4 ? 4 : 6;
    memcpy(out->ip, ip, len);
    out->port = net_addr_port(a);
}

int sess_proxy_attach(struct session *s)
{
    unsigned v = s->wl->cfg->send_proxy;
    struct net_addr local;
    struct pp_addr src, dst;
    uint8_t hdr[PP_BUILD_MAX];
    if (!v) return 0;
    memset(&local, 0, sizeof(local));
    if (sock_local_addr(s->cio.fd, &local) < 0) memset(&local, 0, sizeof(local));
    to_pp(&src, &s->client);
    to_pp(&dst, &local);
    size_t n = v == 1 ? pp_build_v1(hdr, &src, &dst) : pp_build_v2(hdr, &src, &dst);
    return pipe_push_lead(&s->up, &s->wl->w->bufs, hdr, n);
}
