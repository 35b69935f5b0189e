/* addr.h - socket addresses: parse "HOST:PORT" / "[v6]:PORT" / ":PORT", format.
 *
 * Parsing is pure string work (fuzzed by fuzz/fuzz_addr.c). Setup code
 * reports errors into the caller's err buffer (STYLE habit 7).
 */
#ifndef FERRY_ADDR_H
#define FERRY_ADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 socket address, 28 bytes + length: small enough to keep
 * two of them in every session. */
struct net_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;
};

/* Host and port as written by the operator; host may be a name or literal. */
struct host_port {
    char host[256];     /* "" for ":PORT" (all interfaces) */
    uint16_t port;
};

/* Longest text net_addr_format() produces: "[v6]:65535" (scope ids are not printed). */
#define NET_ADDR_STRLEN 64

/* "HOST:PORT", "[v6]:PORT" or ":PORT". Port 0 allowed only if allow_port0.
 * Returns 0, or -1 with a reason in err. */
int host_port_parse(const char *s, struct host_port *out, int allow_port0, char *err, size_t errlen);

/* IP literal (no brackets) + port -> address. Returns 0, or -1 if host is not
 * a literal. Empty host means the IPv4 wildcard. */
int net_addr_from_literal(const char *host, uint16_t port, struct net_addr *out);
/* Raw address bytes (family 4: 4 bytes, 6: 16, as on the wire) + port. */
void net_addr_from_ip(struct net_addr *out, int family, const uint8_t *ip, uint16_t port);

/* HOST:PORT with a literal host, or localhost (= 127.0.0.1 only, never
 * resolved): listen and API addresses. */
int net_addr_parse(const char *s, struct net_addr *out, char *err, size_t errlen);

void net_addr_from_sockaddr(struct net_addr *out, const struct sockaddr *sa, socklen_t len);
/* "1.2.3.4:80" or "[::1]:80"; always NUL-terminated. Returns out. */
char *net_addr_format(const struct net_addr *a, char *out, size_t outlen);
uint16_t net_addr_port(const struct net_addr *a);
/* Sets the port (host order) of an IPv4 or IPv6 address. */
void net_addr_set_port(struct net_addr *a, uint16_t port);
/* The IP as bytes, for the pure modules (ACLs, limits, balancer): *len is 4
 * for IPv4, else 16 (IPv6). Points into a. */
const uint8_t *net_addr_ip(const struct net_addr *a, size_t *len);
int net_addr_is_loopback(const struct net_addr *a);
/* Same family, IP and port (nothing else of the sockaddr). */
int net_addr_equal(const struct net_addr *a, const struct net_addr *b);
/* Would listening on both clash: same family and port (not 0, which picks
 * a free one), and the same IP or either one the wildcard. IPv6 sockets are
 * IPv6-only (sock_listen), so 0.0.0.0 and [::] never clash. */
int net_addr_overlap(const struct net_addr *a, const struct net_addr *b);
/* "host:port", or "[host]:port" when host is an IPv6 literal. */
void host_port_format(const char *host, uint16_t port, char *out, size_t len);

#endif
