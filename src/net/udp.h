/* udp.h - UDP socket helpers shared by the UDP relays (SOCKS5 UDP
 * ASSOCIATE, Shadowsocks UDP). */
#ifndef FERRY_UDP_H
#define FERRY_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/addr.h"

/* Largest datagram read whole, header room included. */
#define UDP_DGRAM_MAX 65536u

/* A non-blocking UDP socket, bound to bind_to unless NULL (with
 * SO_REUSEPORT when reuseport is set). IPv6 ones are IPv6-only: IPv4 has
 * its own. Each datagram read carries the count of those the kernel
 * dropped for a full receive queue (SO_RXQ_OVFL), so a flood shows in the
 * log. Returns the fd, or -1 with errno. */
int udp_socket(int family, const struct net_addr *bind_to, int reuseport);

/* One datagram into buf. Returns its length, or -1 with errno (EMSGSIZE:
 * it did not fit and was dropped). *from is the sender; *ovfl is updated
 * when the kernel reports its drop count. */
ssize_t udp_recv(int fd, uint8_t *buf, size_t cap, struct net_addr *from, uint32_t *ovfl);

/* An IPv4-mapped IPv6 address becomes plain IPv4, so that the IPv4 socket
 * sends it and the IPv4 rules judge it. */
void udp_unmap(struct net_addr *x);

#endif
