/* socks5_udp.h - SOCKS5 UDP ASSOCIATE datagrams (RFC 1928 section 7),
 * sans-I/O: the relay's per-datagram decisions, pure.
 *
 *   client -> relay:  RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA
 *   relay -> client:  the same header naming the reply's source, then DATA
 *
 * A datagram arrives whole, so there is no NEED_MORE: a header cut short
 * is a bad datagram, dropped like any other. No sockets here (socks_addr.h
 * explains why addresses are raw bytes); relay/udp_assoc.c does the I/O.
 */
#ifndef FERRY_PROTO_SOCKS5_UDP_H
#define FERRY_PROTO_SOCKS5_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "proto/socks_addr.h"

/* Largest header the relay writes in front of a reply: its source is
 * always an IP address (RSV RSV FRAG ATYP 16-byte IPv6 PORT). */
#define SOCKS5_UDP_REPLY_HDR_MAX (3 + 1 + 16 + 2)

/* What to do with a client's datagram; every value but OK is a drop, and
 * the relay counts each kind on its own. */
enum socks5_udp_verdict {
    SOCKS5_UDP_OK = 0,
    SOCKS5_UDP_FRAG,        /* FRAG != 0: no reassembly (optional in RFC 1928) */
    SOCKS5_UDP_SHORT,       /* the header ends before its address does */
    SOCKS5_UDP_BAD,         /* unknown ATYP, empty domain, NUL in the domain */
};

/* Classifies the datagram [buf, buf + len). On OK, *dst is the destination
 * and the payload is [buf + *payload_off, buf + len) (possibly empty); on
 * anything else *dst and *payload_off are untouched. */
enum socks5_udp_verdict socks5_udp_parse(const uint8_t *buf, size_t len, struct socks_addr *dst,
                                         size_t *payload_off);

/* Writes RSV RSV FRAG=0 ATYP ADDR PORT naming src (IPv4 or IPv6 only: a
 * reply comes from an address, never a name) at out. Returns the bytes
 * written (10 or 22), or 0 if cap is too small or src is not an IP. */
size_t socks5_udp_build_header(uint8_t *out, size_t cap, const struct socks_addr *src);

/* Who may send datagrams into an association: the address and port the
 * client declared in its UDP ASSOCIATE request, where zeros stand for
 * "the TCP client's IP" and "whatever port comes first". */
struct socks5_udp_peer {
    uint8_t family;         /* 4 or 6 */
    uint8_t ip[16];
    uint16_t port;          /* host order; 0 until learned when not declared */
};

/* The expected sender, from the request's DST (declared) and the TCP
 * client's address (tcp_family 4 or 6, tcp_ip). A declared IP of all zeros
 * (either family) or a declared name means the TCP client's IP; a declared
 * port of 0 is learned from the first datagram. */
void socks5_udp_peer_init(struct socks5_udp_peer *p, const struct socks_addr *declared, int tcp_family,
                          const uint8_t *tcp_ip);

/* 1 if a datagram from (family, ip, port) comes from the client, else 0.
 * The first accepted datagram fixes a port still unknown (p->port is
 * written then). An IPv4-mapped IPv6 sender matches an IPv4 peer. */
int socks5_udp_peer_accept(struct socks5_udp_peer *p, int family, const uint8_t *ip, uint16_t port);

#endif /* FERRY_PROTO_SOCKS5_UDP_H */
