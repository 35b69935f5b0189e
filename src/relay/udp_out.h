/* udp_out.h - the outside of a UDP relay: datagrams to their destinations
 * and the replies back, for one client (a SOCKS5 UDP association, one
 * Shadowsocks UDP client).
 *
 * Destinations get an unconnected socket per family, made at the first
 * datagram of that family and bound to nothing, so the kernel picks the
 * route's source address. Replies are let in only from an address and port
 * the client sent to recently (the last UDP_OUT_PEERS: "address and port
 * restricted" in NAT terms), so the relay lets no third party reach the
 * client and the destination policy checked on the way out covers the way
 * back.
 *
 * Names are resolved with the listener's resolver without blocking: the
 * last name resolved is reused for a while, and one lookup runs at a time
 * (a datagram needing another meanwhile is dropped, never queued). Work per
 * wakeup is capped; nothing is queued here; every drop is counted by kind.
 */
#ifndef FERRY_UDP_OUT_H
#define FERRY_UDP_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "net/addr.h"
#include "proto/socks_addr.h"

struct listener_cfg;
struct resolver;
struct resolver_query;

#define UDP_OUT_PEERS 32
/* Free bytes a reply's payload has in front of it and behind it: room for
 * a SOCKS5 UDP header, or a Shadowsocks salt, address and tag. */
#define UDP_OUT_HEADROOM 64
#define UDP_OUT_TAILROOM 16

struct udp_out_stats {
    uint64_t up_dgrams, up_bytes, down_dgrams, down_bytes;
    uint64_t drop_denied;        /* destination policy */
    uint64_t drop_dns;           /* name did not resolve, or a lookup was already running */
    uint64_t drop_send;          /* sendto failed (a full send buffer: a flood) */
    uint64_t drop_unsolicited;   /* a reply from where the client never sent */
    uint32_t kernel[2];          /* SO_RXQ_OVFL of the IPv4 and IPv6 sockets */
};

/* A reply of n bytes at p, from `from`, with UDP_OUT_HEADROOM bytes free
 * before p and UDP_OUT_TAILROOM after. Returns 0 once it is sent to the
 * client, -1 if it was dropped (counted as drop_send). */
typedef int udp_out_reply_fn(void *owner, const struct net_addr *from, uint8_t *p, size_t n);

struct udp_out {
    struct loop *loop;
    const struct listener_cfg *cfg;      /* destination policy, prefer_ipv6 */
    struct resolver *resolver;           /* NULL: names are dropped */
    udp_out_reply_fn *reply;
    void *owner;
    struct loop_io dio[2];               /* [0] IPv4, [1] IPv6; fd -1 until used */
    struct net_addr peers[UDP_OUT_PEERS];
    unsigned npeers, next_peer;
    struct resolver_query *rq;           /* one datagram waiting for its name */
    uint8_t *pending;
    size_t pending_len;
    char pending_host[256];
    char reuse_host[256];                /* the last name resolved, and its address */
    struct net_addr reuse_addr;
    uint64_t reuse_ms;
    uint64_t last_ms;                    /* last datagram relayed either way */
    struct udp_out_stats st;
};

void udp_out_init(struct udp_out *o, struct loop *l, const struct listener_cfg *cfg, struct resolver *r,
                  udp_out_reply_fn *reply, void *owner);

/* Sends [p, p + n) to dst (an address or a name), if the destination
 * policy allows it. */
void udp_out_send(struct udp_out *o, const struct socks_addr *dst, const uint8_t *p, size_t n);

/* Whether cfg's destination policy lets a datagram go to dst as the client
 * named it: a name by the name rules (its addresses are judged once
 * resolved, in udp_out_send), an address (IPv4-mapped IPv6 as IPv4) by
 * all. For relays that do not resolve themselves (ss-local -u). */
int udp_out_allowed(const struct listener_cfg *cfg, const struct socks_addr *dst);

/* Closes the sockets and cancels the lookup; o itself is the caller's. */
void udp_out_close(struct udp_out *o);

/* "udp_up_dgrams=N udp_up_bytes=N udp_down_dgrams=N udp_down_bytes=N" */
void udp_out_format_counts(const struct udp_out_stats *t, char *out, size_t outlen);

#endif
